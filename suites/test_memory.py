"""Long-run memory: many generations (or load cycles) must reach a plateau, not keep growing.

The load and Foundry Local cycles run first: where the memory plan cannot fit their copies beside the session's model,
that model is released while they run, and the generation tests load it again after them.

Each test marks this process's RSS and USS once per generation or cycle, drops the warm-up, and
fails only when the Theil-Sen slope AND the growth over the last half of the run are both over
their gates (an arena that grows and stops passes). The series go into the run's results.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness import (
    WARMUP_CYCLES,
    WARMUP_GENERATIONS,
    Deployment,
    FoundryLocalSession,
    FoundryUnavailable,
    Gates,
    MemorySampler,
    PreparedModel,
    Profile,
    Prompt,
    ReuseUnsupported,
    Runtime,
    SearchOptions,
    open_reused_generator,
    read_chat_template,
)

# Short questions, cycled: the same work in every round, so only a leak moves the series.
PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Name a colour."}],
    [{"role": "user", "content": "Say hello in one short sentence."}],
    [{"role": "user", "content": "Write one sentence about the sea."}],
]
OPTIONS = SearchOptions(max_new_tokens=16)
FOUNDRY_CHATS_PER_CYCLE = 2
FOUNDRY_CHAT_LENGTH = 512  # the KV cache Foundry reserves per chat: the short chats need little (see the Foundry suite)
Record = Callable[[str, object], None]


@pytest.fixture(scope="module")
def prompts(harness_model: PreparedModel) -> list[Prompt]:
    """The chats, or their text for a base model without a chat template: the workload is what matters here. (Read
    from the model's folder, not its runtime: the load and Foundry cycles may run with the session's model released.)"""
    if read_chat_template(harness_model.path) is None:
        return [chat[-1]["content"] for chat in PROMPTS]
    return list(PROMPTS)


def judge(sampler: MemorySampler, warmup: int, unit: str, slope_gate: str, gates: Gates,
          record_property: Record, request: pytest.FixtureRequest, generations: int) -> None:
    """Record the series and its fit; fail with the verdict line and the series as a report section."""
    failure = sampler.leak_failure(warmup, unit, slope_gate, gates, record_property, generations)
    if failure is not None:
        verdict, series = failure
        request.node.add_report_section("call", "memory series", series)
        pytest.fail(verdict, pytrace=False)


def test_model_load_unload_memory_reaches_a_plateau(
    harness_runtime_loader: Callable[[PreparedModel], Runtime], harness_model: PreparedModel, prompts: list[Prompt],
    harness_profile: Profile, harness_gates: Gates, record_property: Record, request: pytest.FixtureRequest,
) -> None:
    cycles = WARMUP_CYCLES + harness_profile.load_cycles
    with MemorySampler() as sampler:
        for i in range(cycles):
            loaded = harness_runtime_loader(harness_model)
            try:
                loaded.generate(prompts[i % len(prompts)], OPTIONS)
            finally:
                loaded.close()
            del loaded
            sampler.mark(collect=True)
    judge(sampler, WARMUP_CYCLES, "load cycle", "memory_slope_kb_per_cycle_max", harness_gates,
          record_property, request, cycles)


@pytest.mark.harness_chat
def test_foundry_local_session_churn_memory_reaches_a_plateau(
    harness_deployment: Deployment, harness_profile: Profile, harness_gates: Gates, record_property: Record,
    request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    cycles = WARMUP_CYCLES + harness_profile.foundry_cycles
    try:
        with MemorySampler() as sampler:
            for i in range(cycles):  # a new manager, registration, load and chat sessions each cycle
                with FoundryLocalSession(harness_deployment.folder, tmp_path / "foundry-cache",
                                         max_length=FOUNDRY_CHAT_LENGTH) as session:
                    session.load()
                    for k in range(FOUNDRY_CHATS_PER_CYCLE):
                        session.chat(PROMPTS[(i + k) % len(PROMPTS)], OPTIONS.max_new_tokens)
                sampler.mark(collect=True)
    except FoundryUnavailable as exc:
        pytest.skip(str(exc))
    judge(sampler, WARMUP_CYCLES, "Foundry Local cycle", "memory_slope_kb_per_cycle_max", harness_gates,
          record_property, request, cycles * FOUNDRY_CHATS_PER_CYCLE)


def test_reused_generator_memory_reaches_a_plateau(
    harness_runtime: Runtime, prompts: list[Prompt], harness_profile: Profile, harness_gates: Gates,
    record_property: Record, request: pytest.FixtureRequest,
) -> None:
    rendered = [prompt if isinstance(prompt, str) else harness_runtime.chat_prompt(prompt) for prompt in prompts]
    longest = max(len(harness_runtime.encode(text)) for text in rendered)
    try:
        reused = open_reused_generator(harness_runtime, OPTIONS, longest)
    except ReuseUnsupported as exc:
        pytest.skip(str(exc))
    total = WARMUP_GENERATIONS + harness_profile.memory_generations
    try:
        with MemorySampler() as sampler:
            for i in range(total):
                reused.generate(prompts[i % len(prompts)])
                sampler.mark()
        drifted = [i for i, prompt in enumerate(prompts)
                   if reused.generate(prompt).token_ids != harness_runtime.generate(prompt, OPTIONS).token_ids]
    finally:
        reused.close()
    judge(sampler, WARMUP_GENERATIONS, "generation", "memory_slope_kb_per_generation_max", harness_gates,
          record_property, request, total)
    assert not drifted, (f"after {total} requests the reused generator answers prompts {drifted} differently "
                         "from a fresh generator: rewinding leaves state behind")


def test_fresh_generator_per_request_memory_reaches_a_plateau(
    harness_runtime: Runtime, prompts: list[Prompt], harness_profile: Profile, harness_gates: Gates,
    record_property: Record, request: pytest.FixtureRequest,
) -> None:
    total = WARMUP_GENERATIONS + harness_profile.memory_generations
    with MemorySampler() as sampler:
        for i in range(total):
            harness_runtime.generate(prompts[i % len(prompts)], OPTIONS)
            sampler.mark()
    judge(sampler, WARMUP_GENERATIONS, "generation", "memory_slope_kb_per_generation_max", harness_gates,
          record_property, request, total)
