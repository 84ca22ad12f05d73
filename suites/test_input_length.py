"""Input-length stability: prompts of 1 to 2048 tokens and the context minus the answer's room.

Each prompt is the start of a real text (fixtures/texts/) cut to the exact token count, answered
with exactly 32 new tokens. Each length must answer in good form and records its timings and
peak memory; the gates then compare the longest prompt with the shortest. A prompt over the
context must get the harness's error stating both lengths.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness import (
    LENGTH_IDS,
    ContextOverflow,
    Gates,
    LengthSweep,
    MemoryPlan,
    PreparedModel,
    Profile,
    Runtime,
    answer_context,
    format_problems,
    memory_model,
    memory_verdict,
    prefill_verdict,
    tpot_verdict,
)

SUITE = "test_input_length.py"
Record = Callable[[str, object], None]


@pytest.fixture(scope="module")
def sweep(harness_runtime: Runtime) -> LengthSweep:
    """The source text's tokens, enough for a prompt one token over the context."""
    return LengthSweep(harness_runtime, SUITE)


@pytest.fixture(scope="module")
def measured(sweep: LengthSweep) -> LengthSweep:
    """Each length generated once, for its own test and for the gates."""
    return sweep.warm_up()


@pytest.fixture(scope="module")
def planned(sweep: LengthSweep, harness_profile: Profile, harness_memory_plan: MemoryPlan | None) -> list[int]:
    """The lengths measured: the profile's, without those whose prefill the memory plan cannot fit."""
    return sweep.planned(harness_profile.max_prompt_tokens, harness_memory_plan)


def gate(verdict: str | None, measured: LengthSweep, planned: list[int], request: pytest.FixtureRequest) -> None:
    """Fail with the verdict line, and every length's measurements as a report section."""
    if verdict is not None:
        request.node.add_report_section("call", "per-length measurements", measured.table(planned))
        pytest.fail(verdict, pytrace=False)


@pytest.mark.parametrize("length_id", LENGTH_IDS)
def test_prompt_length_answers_in_good_form(
    harness_runtime: Runtime, harness_profile: Profile, harness_memory_plan: MemoryPlan | None,
    measured: LengthSweep, record_property: Record, length_id: str
) -> None:
    n, why = measured.length(length_id, harness_profile.max_prompt_tokens, harness_memory_plan)
    if n is None:
        pytest.skip(why)
    run, generation = measured.measure(n)
    for name, value in run.properties().items():
        record_property(name, value)
    assert generation.prompt_tokens == n, f"the prompt was cut to {n} tokens but encodes to {generation.prompt_tokens}"
    problems = format_problems(generation, measured.options, answer_context(harness_runtime))
    assert not problems, (f"the answer to a {n}-token prompt is malformed: {'; '.join(problems)}\n"
                          f"  answer: {generation.text[:200]!r}")


def test_decode_time_per_token_at_the_longest_prompt(
    measured: LengthSweep, planned: list[int], harness_gates: Gates, record_property: Record,
    request: pytest.FixtureRequest
) -> None:
    shortest, longest = measured.measure(planned[0])[0], measured.measure(planned[-1])[0]
    if shortest.tpot_median_s and longest.tpot_median_s:
        record_property("tpot_ratio", round(longest.tpot_median_s / shortest.tpot_median_s, 3))
    gate(tpot_verdict(shortest, longest, harness_gates["length_tpot_growth_per_1k_max"]), measured, planned,
         request)


def test_prefill_cost_per_token_at_the_longest_prompt(
    measured: LengthSweep, planned: list[int], harness_gates: Gates, record_property: Record,
    request: pytest.FixtureRequest
) -> None:
    runs = measured.runs(planned)
    record_property("prefill_s_per_token_series", [round(run.prefill_s_per_token, 6) for run in runs])
    record_property("prompt_tokens_series", planned)
    gate(prefill_verdict(runs, harness_gates["length_prefill_growth_per_1k_max"]), measured, planned, request)


def test_peak_memory_grows_like_the_kv_cache(
    measured: LengthSweep, planned: list[int], harness_model: PreparedModel, harness_gates: Gates,
    record_property: Record, request: pytest.FixtureRequest,
) -> None:
    model = memory_model(harness_model.path)
    if model is None:
        pytest.skip(f"cannot predict memory per token: {harness_model.path} has no decoder graph with "
                    "present.* and logits outputs")
    shortest, longest = measured.measure(planned[0])[0], measured.measure(planned[-1])[0]
    ratio, verdict = memory_verdict(shortest, longest, model, harness_gates["length_memory_ratio_max"])
    record_property("memory_ratio", round(ratio, 3))
    record_property("kv_cache_kb_per_token", model.kv_bytes_per_token / 1024)
    gate(verdict, measured, planned, request)


def test_prompt_over_the_context_gets_a_clear_error(harness_runtime: Runtime, sweep: LengthSweep) -> None:
    context = harness_runtime.info.context_length
    prompt = sweep.prompt(context + 1)
    try:
        answer = harness_runtime.generate(prompt, sweep.options)
    except ContextOverflow as exc:
        message = str(exc)
        assert str(context + 1) in message and str(context) in message, (
            f"the error for a {context + 1}-token prompt does not state both lengths ({context + 1} and the "
            f"context {context}): {message}")
    else:
        pytest.fail(f"a {context + 1}-token prompt over the {context}-token context was answered "
                    f"({answer.output_tokens} tokens) instead of refused with ContextOverflow", pytrace=False)
    after = harness_runtime.generate(sweep.prompt(16), sweep.options)
    assert after.output_tokens, "the runtime no longer answers after refusing an over-long prompt"
