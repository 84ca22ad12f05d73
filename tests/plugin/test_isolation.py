"""Crash isolation through pytester: the shipped robustness suites on a fake model whose worker runtime
segfaults, aborts, hangs, raises or corrupts its state on a marker input (``harness.testing.worker_fakes``).

Each injected fault fails exactly the test whose input carries the marker; the rest pass and the
session ends with its summary.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.locations import suites_dir
from harness.testing.fakes import FAKES_CONFTEST, write_hf_folder

CONFTEST = """
from harness.testing.fakes import FakeBuilder
from harness.testing.worker_fakes import fake_runtime

def make_builder(settings):
    return FakeBuilder()

def pytest_harness_builders(config):
    return {"model-builder": make_builder}

def pytest_harness_runtime_factory(config):
    return fake_runtime  # the worker process loads it too: the one way to plug a runtime
"""
# Four input cases the fake runtime answers well; the markers below pick one case each.
CASES = "right-to-left or emoji or cjk or combining-marks"
EMOJI, CJK, RTL, COMBINING = "👍", "日本語", "שלום", "Z̷"
FAST_LIMIT = ("--gate", "robustness_timeout_s=1.5", "--gate", "robustness_timeout_ms_per_token=1")
# What these tests read is POSIX's: the crash named by its signal (SIGSEGV, SIGABRT; exit -11), and a hung worker's
# stacks, dumped on SIGUSR1 before the kill.
POSIX_CRASH_NAMES = pytest.mark.skipif(
    sys.platform == "win32", reason="Windows has no SIGSEGV, SIGABRT or SIGUSR1: its crash names (NTSTATUS, abort's "
    "exit code 3) and the killed hang are tested in tests/unit/test_windows_worker.py")


@pytest.fixture
def model(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytester.makeconftest(CONFTEST)
    for name in ("HARNESS_MODEL", "HARNESS_PROFILE", *(f"HARNESS_FAULT_{f}" for f in
                                                        ("SEGFAULT", "ABORT", "HANG", "RAISE", "CORRUPT"))):
        monkeypatch.delenv(name, raising=False)
    for suite in ("test_malformed.py", "test_fuzz.py"):
        shutil.copy(suites_dir() / suite, pytester.path / suite)
    return write_hf_folder(pytester.path / "hf")


def run(pytester: pytest.Pytester, model: Path, suite: str, *args: str) -> pytest.RunResult:
    """The suite on the fake model; Hypothesis seeded, so a fuzz run (and its shrinking) is repeatable."""
    return pytester.runpytest(f"--model={model}", f"--harness-cache-dir={pytester.path / 'cache'}",
                              "--harness-profile=smoke", "-p", "no:cacheprovider", "--hypothesis-seed=1", suite,
                              *args)


def failed_ids(result: pytest.RunResult) -> set[str]:
    return {line.split("::")[1].split(" ")[0] for line in result.outlines if line.startswith("FAILED ")}


@POSIX_CRASH_NAMES
def test_a_segfault_and_a_hang_each_fail_one_test(
    pytester: pytest.Pytester, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_FAULT_SEGFAULT", EMOJI)
    monkeypatch.setenv("HARNESS_FAULT_HANG", CJK)
    result = run(pytester, model, "test_malformed.py", "-k", CASES, *FAST_LIMIT)
    result.assert_outcomes(passed=2, failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert failed_ids(result) == {"test_malformed_input[emoji]", "test_malformed_input[cjk]"}
    result.stdout.fnmatch_lines([
        "emoji: crashed the model worker (SIGSEGV); expected a well-formed answer",
        "request: {*\\ud83d\\udc4d*}",
        "outcome: crashed: SIGSEGV after * s",
        "worker stderr (end):",
        "Fatal Python error: Segmentation fault",
    ])
    result.stdout.fnmatch_lines([
        "cjk: hung: no answer within * s (worker killed); expected a well-formed answer",
        "outcome: hung: no answer within * s (worker killed) after * s",
        "*in _trip*",  # where it hung: faulthandler's stack, dumped before the kill
    ])
    result.stdout.fnmatch_lines(["*= 2 failed, 2 passed, 59 deselected*in *s =*"])  # the session's summary
    summary = json.loads(
        next((pytester.path / "reports").glob("*/robustness/malformed.json")).read_text(encoding="utf-8")
    )
    assert summary["outcomes"] == {"answered": 2, "rejected": 0, "crashed": 1, "hung": 1}
    assert summary["worker_starts"] == 3  # first start, after the crash, after the hang


@POSIX_CRASH_NAMES
def test_an_abort_fails_one_test(pytester: pytest.Pytester, model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_FAULT_ABORT", RTL)
    result = run(pytester, model, "test_malformed.py", "-k", CASES)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["right-to-left: crashed the model worker (SIGABRT); expected a well-formed answer"])


def test_corrupted_state_and_a_foreign_exception_each_fail_one_test(
    pytester: pytest.Pytester, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_FAULT_CORRUPT", RTL)  # answers, then every later answer loses its first token
    monkeypatch.setenv("HARNESS_FAULT_RAISE", COMBINING)
    result = run(pytester, model, "test_malformed.py", "-k", CASES)
    result.assert_outcomes(passed=2, failed=2)  # the worker is restarted after the corruption is seen
    assert failed_ids(result) == {"test_malformed_input[right-to-left]", "test_malformed_input[combining-marks]"}
    result.stdout.fnmatch_lines([
        "right-to-left: state corrupted: afterwards the known-good prompt got answered 7 tokens (length): "
        "'he capi' instead of 'The capi' (tokens *); the input itself: answered, as expected *",
    ])
    result.stdout.fnmatch_lines([
        "combining-marks: rejected (KeyError: 'injected fault'); expected a well-formed answer"])


def test_a_prompt_over_the_context_must_be_refused(pytester: pytest.Pytester, model: Path) -> None:
    """The fake runtime has no context check: it answers what the real one refuses."""
    result = run(pytester, model, "test_malformed.py", "-k", "prompt-fills-context or prompt-one-over-context")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "prompt-one-over-context: answered (8 tokens: *) instead of refusing; "
        "expected a clean rejection (ContextOverflow)"])


@POSIX_CRASH_NAMES
def test_fuzzing_shrinks_a_crash_to_a_minimal_reproducer(
    pytester: pytest.Pytester, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_FAULT_SEGFAULT", r"[^\x00-\x7f]")  # any character beyond ASCII
    result = run(pytester, model, "test_fuzz.py")
    result.assert_outcomes(passed=1, failed=1)
    assert failed_ids(result) == {"test_fuzzed_prompts_are_handled"}
    result.stdout.fnmatch_lines(["crashed the model worker (SIGSEGV); expected a well-formed answer or a clean "
                                 "rejection", "shrunk by Hypothesis to this input; reproducer: *fuzzed-prompts.json"])
    (path,) = (pytester.path / "reports").glob("*/robustness/reproducers/fuzzed-prompts.json")
    reproducer = json.loads(path.read_text(encoding="utf-8"))
    prompt = reproducer["request"]["prompt"]
    typed = prompt["text"] if "text" in prompt else prompt["messages"][0]["content"]
    assert len(typed) == 1 and ord(typed) > 0x7F, f"not shrunk to one character: {typed!r}"
    assert reproducer["outcome"]["signal"] == "SIGSEGV"
    model_folder = reproducer["replay"].split()[4]
    assert reproducer["replay"] == (f"python -m harness.worker --model {model_folder} --replay {path} "
                                    "--runtime harness.testing.worker_fakes:fake_runtime")  # the runtime it ran on
    replay = subprocess.run([sys.executable, *reproducer["replay"].split()[1:]], capture_output=True, timeout=60)
    assert replay.returncode == -11, replay.stderr.decode()  # the reproducer crashes outside pytest too


@POSIX_CRASH_NAMES
def test_fuzzing_shrinks_search_options_to_the_one_that_aborts(
    pytester: pytest.Pytester, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_FAULT_ABORT", r"temperature=(?!1\.0,)")  # any temperature but the default
    result = run(pytester, model, "test_fuzz.py", "-k", "search_options")
    result.assert_outcomes(failed=1)
    (path,) = (pytester.path / "reports").glob("*/robustness/reproducers/fuzzed-search-options.json")
    reproducer = json.loads(path.read_text(encoding="utf-8"))
    options = reproducer["request"]["options"]
    assert set(options) == {"max_new_tokens", "temperature"} and options["temperature"] != 1.0, options
    assert reproducer["outcome"]["signal"] == "SIGABRT"


def test_the_suites_pass_on_a_well_behaved_fake(pytester: pytest.Pytester, model: Path) -> None:
    result = run(pytester, model, "test_fuzz.py")
    result.assert_outcomes(passed=2)
    summary = json.loads(next((pytester.path / "reports").glob("*/robustness/fuzz.json")).read_text(encoding="utf-8"))
    assert summary["outcomes"]["crashed"] == summary["outcomes"]["hung"] == 0
    assert summary["requests"] == 2 * 20  # the smoke profile's fuzz_examples, per fuzz test


def test_a_plugged_runtime_without_a_raw_path_skips_the_raw_settings_cases(pytester: pytest.Pytester,
                                                                          model: Path) -> None:
    """The worker runs the runtime the conftest plugs in, not onnxruntime-genai: here the README's example, a
    factory defined in the conftest (the worker loads it from the file) whose fake has no generate_raw."""
    pytester.makeconftest(FAKES_CONFTEST)
    result = run(pytester, model, "test_malformed.py", "-k", "raw-top-k-negative or top-k-negative", "-rs")
    result.assert_outcomes(passed=1, skipped=1, deselected=result.parseoutcomes()["deselected"])
    result.stdout.fnmatch_lines(["SKIPPED * the plugged-in runtime has no raw path (generate_raw)*"])
