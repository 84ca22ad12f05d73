"""The memory and input-length suites on the real default model, with defects seeded around the real
runtime (a leak per generation, a leak per Foundry Local chat, memory held per prompt token): each
fails in the smoke profile. The clean model passing them is the suites' own run (``make suites``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from harness.checks import lengths
from harness.checks.memory import MB
from harness.deploy.foundry import FoundryAnswer, FoundryLocalSession
from harness.locations import suites_dir
from harness.runtime.genai import GenAIRuntime
from harness.testing.faults import KEPT


def plug_in(pytester: pytest.Pytester, fault: str) -> list[str]:
    """The real runtime with a seeded fault (``harness.testing.faults``), plugged in as a user plugs a runtime:
    a plugin module implementing the hook (the shipped suites sit outside this folder, so not a conftest)."""
    pytester.syspathinsert()
    pytester.makepyfile(fault_plugin=f"from harness.testing.faults import {fault}\n\n"
                                     f"def pytest_harness_runtime_factory(config):\n    return {fault}\n")
    return ["-p", "fault_plugin"]


def run_suite(pytester: pytest.Pytester, name: str, *args: str) -> pytest.RunResult:
    """A shipped suite on the default model (the cache from HARNESS_CACHE_DIR), smoke profile."""
    return pytester.runpytest(str(suites_dir() / name), "--harness-profile=smoke",
                              f"--harness-reports={pytester.path / 'reports'}", *args)


def test_prompts_have_the_exact_token_count_with_the_real_tokenizer(built_path: Path) -> None:
    runtime = GenAIRuntime(built_path)
    try:
        ids = lengths.source_ids(runtime, runtime.info.context_length + 1)
        context = runtime.info.context_length
        for n in (*lengths.LENGTHS, context - lengths.CONTEXT_MARGIN, context + 1):
            assert len(runtime.encode(lengths.prompt_of_tokens(runtime, ids, n))) == n
    finally:
        runtime.close()


def test_a_64_kb_leak_per_generation_of_the_real_model_fails_in_smoke(built_path: Path,
                                                                     pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, "test_memory.py", "-k", "fresh_generator", *plug_in(pytester, "LeakPerGeneration"))
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(["RSS grew * MB over 40 generations after 6 warm-up, slope * KB/generation "
                                 "(limit 16), still * MB over the last 20 (limit 0.5)"])
    # 20 generations x 64 KB = 1.25 MB at least; the real runtime's own allocations come on top.
    tail = re.search(r"still ([\d.]+) MB over the last 20", result.stdout.str())
    assert tail is not None and float(tail.group(1)) >= 1.2


def test_a_leak_per_foundry_local_chat_fails_in_smoke(
    built_path: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = FoundryLocalSession.chat

    def leaky_chat(self: FoundryLocalSession, *args: Any, **kwargs: Any) -> FoundryAnswer:
        KEPT.append(b"\x01" * (2 * MB))
        return chat(self, *args, **kwargs)

    monkeypatch.setattr(FoundryLocalSession, "chat", leaky_chat)
    result = run_suite(pytester, "test_memory.py", "-k", "foundry")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(["RSS grew * MB over 3 Foundry Local cycles after 2 warm-up, slope * KB/Foundry "
                                 "Local cycle (limit 2048), still * MB over the last 2 (limit 0.5)"])


def test_memory_held_per_prompt_token_fails_the_kv_cache_gate(built_path: Path, pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, "test_input_length.py", "-k", "kv_cache",
                       *plug_in(pytester, "HoldsMemoryPerPromptToken"))
    result.assert_outcomes(failed=1, deselected=10)
    result.stdout.fnmatch_lines(["peak RSS grows * MB from 1 to 2048 prompt tokens, 2.*x the 474 MB that the KV cache "
                                 "(90 MB) and the prefill's logits (384 MB) take (limit 1.5x)",
                                 "*- Captured per-length measurements call -*"])


def test_a_budget_fits_the_smoke_profile_to_the_slower_fp32_build_and_still_catches_the_leak(
    built_path: Path, pytester: pytest.Pytester
) -> None:
    """The fp32 build is the slow model: a budget scales the memory suite to its floor, which still catches
    the seeded 64 KB leak per generation."""
    result = run_suite(pytester, "test_memory.py", "-k", "fresh_generator", "--precision=fp32",
                       "--harness-budget=20s", *plug_in(pytester, "LeakPerGeneration"))
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(["harness: budget 20 s*: the model decodes * tokens/s (0.*x the default model's) and "
                                 "answers in * tokens (*x); the smoke profile would take about * s: every sample "
                                 "count at its floor, about * s: the budget is too short for it",
                                 "harness:   memory_generations 40 -> 20: *"])
    result.stdout.fnmatch_lines(["RSS grew * MB over 20 generations after 6 warm-up, slope * KB/generation "
                                 "(limit 16)*"])
