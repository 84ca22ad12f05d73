"""Latency benchmarks (pytest-benchmark, pedantic mode with a warm-up round, rounds from the profile).

At each prompt length, a generation of a fixed length (min new tokens = max new tokens, so decode timings
compare between runs and models) gives the time to first token, TPOT, prefill and decode tokens/s and the
end-to-end latency. Its first token is the same work a one-token request does (the generator created, the
prompt prefilled, one token chosen), so no separate one-token benchmark is timed: that saved 18 generations,
8 s of a smoke run. pytest-benchmark times each call
(``--benchmark-autosave``, ``--benchmark-compare`` and ``--benchmark-compare-fail`` work on those
times); the token metrics, their p50/p90/p99, the model hash, precision and EP go into each
benchmark's ``extra_info`` and, per round, into the run report, which ``harness compare`` and
``--harness-baseline`` read. Under xdist (``-n N``) this module runs on one worker, timed as usual.

Before each round the machine yardstick (``Yardstick``: a fixed int4 workload) is timed, in pytest-benchmark's
setup, outside its timer; ``harness compare`` divides each run's median timings by the run's median yardstick time,
so that the machine's speed changing between two runs cancels out. With ``--harness-ab=BASELINE`` each round also
times the baseline model on the same prompt and settings, before or after this model's call in an order drawn per
round (setup or teardown, so the timer sees this model's call alone), for at least ``AB_MIN_PAIRS`` rounds; this
model's rounds alternate its copy loaded before the baseline and one loaded after it (``ABModels``). The paired
ratios give the verdict (``judge_pairs``): a regression fails the check, an inconclusive one is its own outcome
(``--inconclusive``).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from harness import (
    AB_MIN_PAIRS,
    ABModels,
    Gates,
    Generation,
    InconclusiveVerdict,
    Pair,
    PreparedModel,
    Profile,
    Runtime,
    SearchOptions,
    Yardstick,
    judge_pairs,
    pair_orders,
)
from harness.checks import lengths
from harness.checks.bench import GATES, ROUNDS_SUFFIX, RoundMetrics, describe, metric_rounds
from harness.checks.resources import Resources, ResourceSampler

PROMPT_TOKENS = (32, 128, 512)
OUTPUT_TOKENS = 64  # ~0.5 s of decoding on the default model: long enough for a stable rate, short for CI
WARMUP_ROUNDS = 1
# Timing rounds: no margins (they are for verdicts over compute paths, and reading them costs ~0.5% a token).
FIXED_LENGTH = SearchOptions(max_new_tokens=OUTPUT_TOKENS, min_new_tokens=OUTPUT_TOKENS, margins=False)
CLOCK_GAP = GATES[0]
TIMING_LIMIT = "regression_timing_max"  # the gate a timing change is judged by, between runs and within one (A/B)
PASSAGE = (
    "Small language models answer questions on laptops, phones and edge devices without a network. "
    "Quantization shrinks their weights to four or eight bits, which saves memory and time but can "
    "change what they say, so every build is measured before it ships."
)


@dataclass(frozen=True)
class Measured:
    generations: list[Generation]  # the timed rounds (warm-up left out)
    wall_s: list[float]  # wall time around each of those calls
    resources: Resources
    pairs: list[Pair]  # with --harness-ab: each timed round with the baseline's generation beside it
    yardstick_s: list[float]  # the machine yardstick's time before each timed round

    @property
    def rounds(self) -> list[RoundMetrics]:
        return [RoundMetrics.of(g) for g in self.generations]


@pytest.fixture(scope="module")
def prompt_of(harness_runtime: Runtime) -> Callable[[int], str]:
    """A plain-text prompt of ``tokens`` tokens (at most; the report records the exact count)."""

    @functools.cache
    def build(tokens: int) -> str:
        ids = lengths.repeated_ids(harness_runtime, PASSAGE, tokens, separator=" ")
        return lengths.prompt_of_tokens(harness_runtime, ids, tokens, at_most=True)

    return build


def _fits(runtime: Runtime, prompt_tokens: int, output_tokens: int) -> None:
    if prompt_tokens + output_tokens >= runtime.info.context_length:
        pytest.skip(f"{prompt_tokens} prompt + {output_tokens} output tokens do not fit the model's context "
                    f"of {runtime.info.context_length}")


def _measure(benchmark: BenchmarkFixture, runtime: Runtime, prompt: str, options: SearchOptions,
             rounds: int, yardstick: Yardstick, ab: ABModels | None = None) -> Measured:
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


def _judge_ab(measured: Measured, harness_gates: Gates, record_property: Callable[[str, object], None]) -> None:
    """The A/B verdict: a regression fails the check, an inconclusive verdict is its own outcome."""
    if not measured.pairs:
        raise InconclusiveVerdict("no A/B pairs were timed (with --benchmark-disable each benchmark runs once)")
    verdicts = judge_pairs(measured.pairs, harness_gates[TIMING_LIMIT])
    record_property("ab_pairs", len(measured.pairs))
    for verdict in verdicts:
        record_property(f"ab_{verdict.metric}_ratio", verdict.ratio)
        record_property(f"ab_{verdict.metric}_verdict", verdict.verdict)
    lines = "\n".join(verdict.line() for verdict in verdicts)
    limit = f"(gate {TIMING_LIMIT} {harness_gates[TIMING_LIMIT]:g}, {harness_gates.origins[TIMING_LIMIT]})"
    worst = verdicts[0].verdict if verdicts else "inconclusive"
    assert worst != "regression", f"slower than the A/B baseline {limit}:\n{lines}"
    if worst == "inconclusive":
        raise InconclusiveVerdict(f"the A/B pairs cannot decide {limit}:\n{lines}")


def _record(benchmark: BenchmarkFixture, record_property: Callable[[str, object], None], measured: Measured,
            model: PreparedModel) -> dict[str, list[float]]:
    """Per-round series and medians into the run report; statistics and provenance into extra_info."""
    rounds = measured.rounds
    series = metric_rounds(rounds)
    if len(measured.yardstick_s) == len(rounds):  # what harness compare normalizes the timings by
        series["yardstick_s"] = measured.yardstick_s
    extra: dict[str, object] = {
        "prompt_tokens": rounds[0].prompt_tokens,
        "output_tokens": rounds[0].output_tokens,
        "rounds": len(rounds),
        "warmup_rounds": WARMUP_ROUNDS,
        "model_sha256": model.plan.source_hash,
        "precision": model.plan.precision if model.plan.needs_build else "prebuilt",
        "ep": model.plan.ep,
        "peak_rss_mb": round(measured.resources.peak_rss_mb, 1),
        "cpu_percent": round(measured.resources.cpu_percent, 1),
        "cpu_cores": measured.resources.cpu_cores,
        "other_cpu_percent": round(measured.resources.other_cpu_percent, 1),
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


def _check_clocks(measured: Measured, harness_gates: Gates, record_property: Callable[[str, object], None]) -> None:
    """The latency the runtime reports must account for the wall time of the call: judged on the median round, so
    one round a busy host stalls outside the runtime's clock does not decide it, while a clock that leaves time out
    leaves it out of every round."""
    gaps = [(wall - g.total_seconds) / wall for g, wall in zip(measured.generations, measured.wall_s, strict=True)]
    typical = statistics.median(gaps)
    record_property("clock_gap", typical)
    record_property("clock_gap_worst", max(gaps, key=abs))
    limit, origin = harness_gates[CLOCK_GAP.name], harness_gates.origins[CLOCK_GAP.name]
    assert abs(typical) <= limit, (
        f"the runtime's reported latency misses {typical:.1%} of the wall time of its call (median round) "
        f"(gate {CLOCK_GAP.name} at most {limit:g}, {origin}): its token timings cannot be trusted; "
        f"wall {[round(w, 4) for w in measured.wall_s]} s, reported "
        f"{[round(g.total_seconds, 4) for g in measured.generations]} s"
    )


@pytest.mark.parametrize("prompt_tokens", PROMPT_TOKENS, ids=lambda n: f"prompt={n}")
def test_generation_latency(
    benchmark: BenchmarkFixture, harness_runtime: Runtime, prompt_of: Callable[[int], str], harness_profile: Profile,
    harness_model: PreparedModel, harness_gates: Gates, record_property: Callable[[str, object], None],
    harness_ab: ABModels | None, harness_yardstick: Yardstick, prompt_tokens: int,
) -> None:
    _fits(harness_runtime, prompt_tokens, OUTPUT_TOKENS)
    rounds = harness_profile.benchmark_rounds if harness_ab is None else max(harness_profile.benchmark_rounds,
                                                                             AB_MIN_PAIRS)
    measured = _measure(benchmark, harness_runtime, prompt_of(prompt_tokens), FIXED_LENGTH, rounds,
                        harness_yardstick, harness_ab)
    produced = [g.output_tokens for g in measured.generations]
    assert all(n == OUTPUT_TOKENS for n in produced), (
        f"the runtime did not honour min_new_tokens = max_new_tokens = {OUTPUT_TOKENS}: the rounds produced "
        f"{produced} tokens (stop reasons {[g.stop_reason for g in measured.generations]}), so decode "
        "timings would not compare between runs"
    )
    _record(benchmark, record_property, measured, harness_model)
    _check_clocks(measured, harness_gates, record_property)
    if harness_ab is not None:
        _judge_ab(measured, harness_gates, record_property)
