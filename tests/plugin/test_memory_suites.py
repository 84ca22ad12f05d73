"""The memory and input-length suites on the fake runtime: seeded leaks, slow-downs and a missing
context check fail with their verdict line; a clean fake and an arena-like plateau pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.locations import suites_dir
from harness.testing.fakes import write_hf_folder

KB = 1024
MB = 1024 * KB

CONFTEST = """
import os
from harness.testing.fakes import FakeBuilder, FakeRuntime

PREFILL = {"linear": lambda n: 1e-4 * n, "quadratic": lambda n: 1e-4 * n + 3e-7 * n * n}
DECODE = {"flat": None, "linear": lambda context: 5e-6 * context}

def make_builder(settings):
    return FakeBuilder(context_length=int(os.environ.get("FAKE_CONTEXT", "256")))

def pytest_harness_builders(config):
    return {"model-builder": make_builder}

def make_runtime(path, ep):
    env = os.environ
    stops = env.get("FAKE_LEAK_STOPS_AFTER")
    return FakeRuntime(
        path, answer=lambda prompt: f"{len(prompt) % 97} is the answer.", delay_per_token_s=0.001,
        leak_bytes_per_call=int(env.get("FAKE_LEAK_PER_CALL", "0")),
        leak_stops_after=int(stops) if stops else None,
        leak_bytes_per_load=int(env.get("FAKE_LEAK_PER_LOAD", "0")),
        prefill_time=PREFILL[env.get("FAKE_PREFILL", "linear")], token_time=DECODE[env.get("FAKE_DECODE", "flat")],
        enforce_context=not env.get("FAKE_NO_CONTEXT_CHECK"), reuse_carries_state=bool(env.get("FAKE_REUSE_STATE")))


def pytest_harness_runtime_factory(config):
    return make_runtime
"""
FAKE_VARIABLES = ("FAKE_CONTEXT", "FAKE_LEAK_PER_CALL", "FAKE_LEAK_STOPS_AFTER", "FAKE_LEAK_PER_LOAD", "FAKE_PREFILL",
                  "FAKE_DECODE", "FAKE_NO_CONTEXT_CHECK", "FAKE_REUSE_STATE")


@pytest.fixture
def suites(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Copies of the two suites next to a conftest that plugs in the fakes."""
    pytester.makeconftest(CONFTEST)
    for name in ("HARNESS_MODEL", "HARNESS_PROFILE", *FAKE_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    folder = pytester.path / "suite"
    folder.mkdir()
    for name in ("test_memory.py", "test_input_length.py"):
        shutil.copy(suites_dir() / name, folder / name)
    return folder


def run(pytester: pytest.Pytester, suite: Path, *args: str) -> pytest.RunResult:
    """The smoke profile on the fake model. Foundry Local needs a real model: its churn test is
    checked end to end (tests/e2e/test_memory.py). The memory suite runs in a process of its own: in
    this one, the heap the tests before it freed could go back to the OS during its marks and mask a
    seeded leak (it did once in CI, on two busy cores)."""
    model = write_hf_folder(pytester.path / "hf")
    runner = pytester.runpytest_subprocess if suite.name == "test_memory.py" else pytester.runpytest
    return runner(f"--model={model}", f"--harness-cache-dir={pytester.path / 'cache'}",
                  "--harness-profile=smoke", "-k", "not foundry", *args, str(suite))


# -- memory ------------------------------------------------------------------------------------------
def test_clean_fake_passes_every_memory_test(pytester: pytest.Pytester, suites: Path) -> None:
    result = run(pytester, suites / "test_memory.py")
    result.assert_outcomes(passed=3, deselected=1)


def test_a_64_kb_per_generation_leak_fails_in_smoke(
    pytester: pytest.Pytester, suites: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LEAK_PER_CALL", str(64 * KB))
    result = run(pytester, suites / "test_memory.py")
    result.assert_outcomes(passed=1, failed=2, deselected=1)  # load cycles: one generation each, 64 KB/cycle
    result.stdout.fnmatch_lines([
        "*test_reused_generator_memory_reaches_a_plateau*",
        "RSS grew * MB over 40 generations after 6 warm-up, slope * KB/generation (limit 16), "
        "still 1.* MB over the last 20 (limit 0.5)",
        "*- Captured memory series call -*",
        "one point per generation, after returning freed heap to the OS; the first 6 are warm-up, not fitted",
        "RSS MB:",
        "     1: *",
        "*test_fresh_generator_per_request_memory_reaches_a_plateau*",
        "RSS grew * MB over 40 generations after 6 warm-up, slope * KB/generation (limit 16), *",
    ])


def test_an_arena_like_plateau_passes(pytester: pytest.Pytester, suites: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1 MB per generation until generation 20 (14 past the warm-up), then nothing: the slope fit
    and the flat last half both say plateau."""
    monkeypatch.setenv("FAKE_LEAK_PER_CALL", str(MB))
    monkeypatch.setenv("FAKE_LEAK_STOPS_AFTER", "20")
    result = run(pytester, suites / "test_memory.py", "-k", "reused")
    result.assert_outcomes(passed=1, deselected=3)


def test_the_same_growth_without_the_plateau_fails(
    pytester: pytest.Pytester, suites: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LEAK_PER_CALL", str(MB))
    result = run(pytester, suites / "test_memory.py", "-k", "reused")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(["RSS grew * MB over 40 generations after 6 warm-up, slope 10??.? KB/generation *"])


def test_a_leak_per_model_load_fails(pytester: pytest.Pytester, suites: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LEAK_PER_LOAD", str(4 * MB))
    result = run(pytester, suites / "test_memory.py", "-k", "load_unload")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(["RSS grew * MB over 5 load cycles after 2 warm-up, slope * KB/load cycle "
                                 "(limit 2048), still * MB over the last 3 (limit 0.5)"])


def test_a_reused_generator_that_keeps_state_fails(
    pytester: pytest.Pytester, suites: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_REUSE_STATE", "1")
    result = run(pytester, suites / "test_memory.py", "-k", "reused")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(["*after 46 requests the reused generator answers prompts [[]0, 1, 2, 3[]] differently "
                                 "from a fresh generator*"])


def test_gates_can_be_loosened_from_the_command_line(
    pytester: pytest.Pytester, suites: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LEAK_PER_CALL", str(64 * KB))
    result = run(pytester, suites / "test_memory.py", "-k", "fresh", "--gate", "memory_slope_kb_per_generation_max=100")
    result.assert_outcomes(passed=1, deselected=3)


# -- input length --------------------------------------------------------------------------------------
def length_run(pytester: pytest.Pytester, suites: Path, monkeypatch: pytest.MonkeyPatch,
               *args: str) -> pytest.RunResult:
    monkeypatch.setenv("FAKE_CONTEXT", "4096")  # the smoke cap, 2048, fits; the context - 32 does not
    return run(pytester, suites / "test_input_length.py", "-rs", *args)


def test_clean_fake_passes_every_length(
    pytester: pytest.Pytester, suites: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = length_run(pytester, suites, monkeypatch)
    result.assert_outcomes(passed=9, skipped=2)
    result.stdout.fnmatch_lines_random([
        "SKIPPED * context - 32 = 4064 tokens is over this profile's cap of 2048 tokens",
        "SKIPPED * cannot predict memory per token: * has no decoder graph with present.* and logits outputs",
    ])


def test_decode_that_slows_with_the_context_fails(
    pytester: pytest.Pytester, suites: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DECODE", "linear")
    result = length_run(pytester, suites, monkeypatch, "-k", "decode")
    result.assert_outcomes(failed=1, deselected=10)
    result.stdout.fnmatch_lines([
        "decode slows *x from 1 to 2048 prompt tokens (* -> * ms/token), over the 7.14x allowed (1 + 3 per 1k tokens)",
        "*- Captured per-length measurements call -*",
        "prompt tokens   TTFT s   TPOT ms (median)   prefill ms/token   peak RSS MB",
        "            1 *",
        "         2048 *",
    ])


def test_quadratic_prefill_fails(pytester: pytest.Pytester, suites: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PREFILL", "quadratic")
    result = length_run(pytester, suites, monkeypatch, "-k", "prefill")
    result.assert_outcomes(failed=1, deselected=10)
    result.stdout.fnmatch_lines(["prefill costs * ms/token at 2048 tokens, *x the * ms/token at *, over the *x "
                                 "allowed (1 + 0.75 per 1k tokens)"])


def test_a_runtime_that_answers_over_its_context_fails(
    pytester: pytest.Pytester, suites: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NO_CONTEXT_CHECK", "1")
    result = length_run(pytester, suites, monkeypatch, "-k", "over_the_context")
    result.assert_outcomes(failed=1, deselected=10)
    result.stdout.fnmatch_lines(["*a 4097-token prompt over the 4096-token context was answered (* tokens) instead "
                                 "of refused with ContextOverflow*"])
