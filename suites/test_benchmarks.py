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
from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from harness import (
    AB_MIN_PAIRS,
    ABModels,
    Gates,
    PreparedModel,
    Profile,
    Runtime,
    SearchOptions,
    Yardstick,
    benchmark_prompt,
    measure_latency,
)

PROMPT_TOKENS = (32, 128, 512)
OUTPUT_TOKENS = 64  # ~0.5 s of decoding on the default model: long enough for a stable rate, short for CI
# Timing rounds: no margins (they are for verdicts over compute paths, and reading them costs ~0.5% a token).
FIXED_LENGTH = SearchOptions(max_new_tokens=OUTPUT_TOKENS, min_new_tokens=OUTPUT_TOKENS, margins=False)
PASSAGE = (
    "Small language models answer questions on laptops, phones and edge devices without a network. "
    "Quantization shrinks their weights to four or eight bits, which saves memory and time but can "
    "change what they say, so every build is measured before it ships."
)


@pytest.fixture(scope="module")
def prompt_of(harness_runtime: Runtime) -> Callable[[int], str]:
    """A plain-text prompt of ``tokens`` tokens (at most; the report records the exact count)."""

    @functools.cache
    def build(tokens: int) -> str:
        return benchmark_prompt(harness_runtime, PASSAGE, tokens)

    return build


def _fits(runtime: Runtime, prompt_tokens: int, output_tokens: int) -> None:
    if prompt_tokens + output_tokens >= runtime.info.context_length:
        pytest.skip(f"{prompt_tokens} prompt + {output_tokens} output tokens do not fit the model's context "
                    f"of {runtime.info.context_length}")


@pytest.mark.parametrize("prompt_tokens", PROMPT_TOKENS, ids=lambda n: f"prompt={n}")
def test_generation_latency(
    benchmark: BenchmarkFixture, harness_runtime: Runtime, prompt_of: Callable[[int], str], harness_profile: Profile,
    harness_model: PreparedModel, harness_gates: Gates, record_property: Callable[[str, object], None],
    harness_ab: ABModels | None, harness_yardstick: Yardstick, prompt_tokens: int,
) -> None:
    _fits(harness_runtime, prompt_tokens, OUTPUT_TOKENS)
    rounds = harness_profile.benchmark_rounds if harness_ab is None else max(harness_profile.benchmark_rounds,
                                                                             AB_MIN_PAIRS)
    measured = measure_latency(benchmark, harness_runtime, prompt_of(prompt_tokens), FIXED_LENGTH, rounds,
                               harness_yardstick, harness_ab)
    produced = [g.output_tokens for g in measured.generations]
    assert all(n == OUTPUT_TOKENS for n in produced), (
        f"the runtime did not honour min_new_tokens = max_new_tokens = {OUTPUT_TOKENS}: the rounds produced "
        f"{produced} tokens (stop reasons {[g.stop_reason for g in measured.generations]}), so decode "
        "timings would not compare between runs"
    )
    measured.record(benchmark, record_property, harness_model)
    clock_gap = measured.clock_gap_failure(harness_gates, record_property)
    assert clock_gap is None, clock_gap
    if harness_ab is not None:
        regression = measured.ab_failure(harness_gates, record_property)
        assert regression is None, regression
