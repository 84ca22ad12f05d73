"""Token metrics of a generation and their per-round statistics (the process's resources meanwhile: ``resources``).

Definitions (the same everywhere in the harness, and the ones ``harness compare`` reads):

- ``ttft_s``: request start to the first output token;
- ``tpot_s``: (latency - TTFT) / (output tokens - 1), MLPerf's time per output token;
- ``decode_tokens_per_s``: 1 / TPOT, the tokens after the first divided by the time they took;
- ``prefill_tokens_per_s``: prompt tokens / the time the runtime spent on the prompt (TTFT when the
  runtime does not report it separately);
- ``latency_s``: request start to the last output token.

A benchmark records each metric's median as ``NAME`` and its per-round values as ``NAME_rounds``:
the rounds are what the comparison bootstraps its noise estimate from.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from harness.config.gates import Gate
from harness.runtime.protocol import Generation

ROUNDS_SUFFIX = "_rounds"
METRICS = ("ttft_s", "tpot_s", "prefill_tokens_per_s", "decode_tokens_per_s", "latency_s")

GATES = (
    Gate("benchmark_clock_gap_max", 0.10, "max", "",
         "relative gap between the latency a runtime reports for a round and the wall time around the same "
         "call, in the median round (catches a runtime whose own clocks leave time out; one round a busy host "
         "stalls outside the runtime's clock does not decide it). Measured on the default model (int4, cpu, "
         "5 rounds), 48 benchmark checks on 2 cores shared with 3 busy workers: 0.03% to 3.1% in the worst round "
         "(`pytest suites/test_benchmarks.py`, properties clock_gap, clock_gap_worst); the largest for TTFT at "
         "32 prompt tokens, where tokenizing falls outside the runtime's clock; 10% leaves three times that"),
)


@dataclass(frozen=True)
class RoundMetrics:
    """The token metrics of one generation (one benchmark round)."""

    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    tpot_s: float | None
    prefill_tokens_per_s: float | None
    decode_tokens_per_s: float | None
    latency_s: float

    @classmethod
    def of(cls, generation: Generation) -> RoundMetrics:
        tpot = generation.tpot
        prefill = generation.prefill_seconds if generation.prefill_seconds > 0 else generation.ttft
        return cls(
            prompt_tokens=generation.prompt_tokens,
            output_tokens=generation.output_tokens,
            ttft_s=generation.ttft,
            tpot_s=tpot,
            prefill_tokens_per_s=generation.prompt_tokens / prefill if prefill > 0 else None,
            decode_tokens_per_s=1.0 / tpot if tpot else None,
            latency_s=generation.total_seconds,
        )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default method)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def describe(values: Sequence[float]) -> dict[str, float]:
    """Median, mean, spread and tail percentiles of one metric's rounds."""
    return {
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "p50": percentile(values, 0.50),
        "p90": percentile(values, 0.90),
        "p99": percentile(values, 0.99),
    }


def metric_rounds(rounds: Sequence[RoundMetrics]) -> dict[str, list[float]]:
    """Each metric's per-round values (a metric a round cannot give, e.g. TPOT of one token, is left out)."""
    series: dict[str, list[float]] = {}
    for name in METRICS:
        values = [getattr(r, name) for r in rounds]
        if values and all(v is not None for v in values):
            series[name] = [float(v) for v in values]
    return series
