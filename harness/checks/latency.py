"""The latency benchmark's rounds (``suites/test_benchmarks.py``): timed by pytest-benchmark with the machine
yardstick and, with ``--harness-ab``, the baseline's calls outside its timer; what they record, and the verdicts on
the runtime's clocks and on the A/B pairs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from harness.checks import lengths
from harness.checks.ab import ABModels, InconclusiveVerdict, Pair, judge_pairs, pair_orders
from harness.checks.bench import GATES, ROUNDS_SUFFIX, RoundMetrics, describe, metric_rounds
from harness.checks.resources import Resources, ResourceSampler
from harness.checks.yardstick import Yardstick
from harness.config.gates import Gates
from harness.runtime.protocol import Generation, Runtime, SearchOptions

if TYPE_CHECKING:
    from harness.preparation.pipeline import PreparedModel

WARMUP_ROUNDS = 1
CLOCK_GAP = GATES[0]
TIMING_LIMIT = "regression_timing_max"  # the gate a timing change is judged by, between runs and within one (A/B)
RecordProperty = Callable[[str, object], None]


class Benchmark(Protocol):
    """What is used of pytest-benchmark's ``benchmark`` fixture."""

    extra_info: dict[str, Any]

    def pedantic(self, target: Callable[[], None], *, setup: Callable[[], None], teardown: Callable[[], None],
                 rounds: int, warmup_rounds: int, iterations: int) -> Any: ...


@dataclass(frozen=True)
class Measured:
    """One prompt length's timed rounds (``measure_latency``): what they record, and the verdicts on them."""

    generations: list[Generation]  # the timed rounds (warm-up left out)
    wall_s: list[float]  # wall time around each of those calls
    resources: Resources
    pairs: list[Pair]  # with --harness-ab: each timed round with the baseline's generation beside it
    yardstick_s: list[float]  # the machine yardstick's time before each timed round

    @property
    def rounds(self) -> list[RoundMetrics]:
        return [RoundMetrics.of(g) for g in self.generations]

    def record(self, benchmark: Benchmark, record_property: RecordProperty,
               model: PreparedModel) -> dict[str, list[float]]:
        """Per-round series and medians into the run report; statistics and provenance into extra_info."""
        rounds = self.rounds
        series = metric_rounds(rounds)
        if len(self.yardstick_s) == len(rounds):  # what harness compare normalizes the timings by
            series["yardstick_s"] = self.yardstick_s
        extra: dict[str, object] = {
            "prompt_tokens": rounds[0].prompt_tokens,
            "output_tokens": rounds[0].output_tokens,
            "rounds": len(rounds),
            "warmup_rounds": WARMUP_ROUNDS,
            "model_sha256": model.plan.source_hash,
            "precision": model.plan.precision if model.plan.needs_build else "prebuilt",
            "ep": model.plan.ep,
            "peak_rss_mb": round(self.resources.peak_rss_mb, 1),
            "cpu_percent": round(self.resources.cpu_percent, 1),
            "cpu_cores": self.resources.cpu_cores,
            "other_cpu_percent": round(self.resources.other_cpu_percent, 1),
        }
        for name, values in series.items():
            extra[name] = describe(values)
        benchmark.extra_info.update(extra)
        for name in ("prompt_tokens", "output_tokens", "peak_rss_mb", "cpu_percent", "other_cpu_percent"):
            record_property(name, extra[name])
        record_property("rounds", len(rounds))
        for name, values in series.items():
            record_property(name, describe(values)["median"])
            record_property(name + ROUNDS_SUFFIX, values)
        return series

    def clock_gap_failure(self, gates: Gates, record_property: RecordProperty) -> str | None:
        """The latency the runtime reports must account for the wall time of the call: judged on the median round, so
        one round a busy host stalls outside the runtime's clock does not decide it, while a clock that leaves time out
        leaves it out of every round. Records the gaps; the failure message, or None."""
        gaps = [(wall - g.total_seconds) / wall for g, wall in zip(self.generations, self.wall_s, strict=True)]
        typical = statistics.median(gaps)
        record_property("clock_gap", typical)
        record_property("clock_gap_worst", max(gaps, key=abs))
        limit, origin = gates[CLOCK_GAP.name], gates.origins[CLOCK_GAP.name]
        if abs(typical) <= limit:
            return None
        return (
            f"the runtime's reported latency misses {typical:.1%} of the wall time of its call (median round) "
            f"(gate {CLOCK_GAP.name} at most {limit:g}, {origin}): its token timings cannot be trusted; "
            f"wall {[round(w, 4) for w in self.wall_s]} s, reported "
            f"{[round(g.total_seconds, 4) for g in self.generations]} s"
        )

    def ab_failure(self, gates: Gates, record_property: RecordProperty) -> str | None:
        """The A/B verdict on the paired rounds, recorded: the failure message of a regression, None otherwise; an
        inconclusive verdict raises ``InconclusiveVerdict`` (its own outcome, ``--inconclusive``)."""
        if not self.pairs:
            raise InconclusiveVerdict("no A/B pairs were timed (with --benchmark-disable each benchmark runs once)")
        verdicts = judge_pairs(self.pairs, gates[TIMING_LIMIT])
        record_property("ab_pairs", len(self.pairs))
        for verdict in verdicts:
            record_property(f"ab_{verdict.metric}_ratio", verdict.ratio)
            record_property(f"ab_{verdict.metric}_verdict", verdict.verdict)
        lines = "\n".join(verdict.line() for verdict in verdicts)
        limit = f"(gate {TIMING_LIMIT} {gates[TIMING_LIMIT]:g}, {gates.origins[TIMING_LIMIT]})"
        worst = verdicts[0].verdict if verdicts else "inconclusive"
        if worst == "regression":
            return f"slower than the A/B baseline {limit}:\n{lines}"
        if worst == "inconclusive":
            raise InconclusiveVerdict(f"the A/B pairs cannot decide {limit}:\n{lines}")
        return None


def benchmark_prompt(runtime: Runtime, passage: str, tokens: int) -> str:
    """A plain-text prompt of ``tokens`` tokens (at most; the report records the exact count): ``passage`` repeated,
    a space between copies, and cut."""
    ids = lengths.repeated_ids(runtime, passage, tokens, separator=" ")
    return lengths.prompt_of_tokens(runtime, ids, tokens, at_most=True)


def measure_latency(benchmark: Benchmark, runtime: Runtime, prompt: str, options: SearchOptions,
                    rounds: int, yardstick: Yardstick, ab: ABModels | None = None) -> Measured:
    """``rounds`` generations timed by pytest-benchmark after a warm-up round, the process's resources meanwhile, and
    before each round, outside the timer, the machine yardstick; with ``ab``, the baseline's call on the same prompt
    before or after each round (in an order drawn per round) and the rounds alternating the two copies of the model."""
    # With A/B, rounds alternate the model's copy loaded before the baseline and the one loaded after it.
    copies = (runtime,) if ab is None else (runtime, ab.current_after)
    baseline = None if ab is None else ab.baseline
    calls: list[tuple[Generation, float]] = []
    theirs: list[Generation] = []
    yards: list[float] = []
    orders = pair_orders(rounds + WARMUP_ROUNDS) if baseline is not None else [True] * (rounds + WARMUP_ROUNDS)
    ours_first = iter(orders)
    current_first = True

    def one_round() -> None:
        model = copies[len(calls) % len(copies)]
        started = time.perf_counter()
        generation = model.generate(prompt, options)
        calls.append((generation, time.perf_counter() - started))

    def before() -> None:  # untimed: the yardstick, and the baseline's call when it runs first this round
        nonlocal current_first
        current_first = next(ours_first)
        yards.append(yardstick.seconds())
        if baseline is not None and not current_first:
            theirs.append(baseline.generate(prompt, options))

    def after() -> None:  # untimed: the baseline's call when it runs second
        if baseline is not None and current_first:
            theirs.append(baseline.generate(prompt, options))

    with ResourceSampler() as sampler:
        benchmark.pedantic(one_round, setup=before, teardown=after, rounds=rounds, warmup_rounds=WARMUP_ROUNDS,
                           iterations=1)
    timed = calls[WARMUP_ROUNDS:] if len(calls) == rounds + WARMUP_ROUNDS else calls  # one call if disabled
    assert sampler.result is not None
    pairs = [Pair(ours, base, first) for (ours, _), base, first
             in zip(calls[WARMUP_ROUNDS:], theirs[WARMUP_ROUNDS:], orders[WARMUP_ROUNDS:], strict=False)]
    return Measured([g for g, _ in timed], [w for _, w in timed], sampler.result, pairs, yards[WARMUP_ROUNDS:])
