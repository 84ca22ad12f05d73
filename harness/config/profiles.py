"""Sample counts per profile: ``smoke`` keeps this repo's CI fast, ``full`` is for gating a release.

A conftest adds its own through the ``pytest_harness_profiles`` hook."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    template_examples: int  # Hypothesis examples per PromptTemplate entry
    memory_generations: int  # generations per long-run memory test
    load_cycles: int  # model load / unload cycles in the memory suite
    foundry_cycles: int  # Foundry Local load / unload cycles in the memory suite
    max_prompt_tokens: int | None  # longest prompt in the length suite (None: the context - margin)
    fuzz_examples: int  # Hypothesis examples per fuzz test of the robustness suite
    benchmark_rounds: int  # pytest-benchmark rounds per latency benchmark


BUILTIN_PROFILES = (
    Profile("smoke", template_examples=25, memory_generations=40, load_cycles=5, foundry_cycles=3,
            max_prompt_tokens=2048, fuzz_examples=20, benchmark_rounds=5),
    Profile("full", template_examples=200, memory_generations=300, load_cycles=20, foundry_cycles=10,
            max_prompt_tokens=None, fuzz_examples=200, benchmark_rounds=20),
)
