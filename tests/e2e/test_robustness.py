"""The robustness suites on the real default model: they pass (known onnxruntime-genai 0.18.0 defects as
xfail), and faults injected into the real runtime (``harness.testing.worker_fakes:faulty_genai``) each fail
exactly the case that carries their marker while the session runs to its summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.robustness.catalog import INPUT_CASES, SETTING_CASES
from tests.e2e.support import ROOT, with_context

MALFORMED = str(ROOT / "suites" / "test_malformed.py")
FUZZ = str(ROOT / "suites" / "test_fuzz.py")
FAULTS = ("SEGFAULT", "ABORT", "HANG", "RAISE", "CORRUPT")


def _id(test: str, case_id: str) -> str:
    return f"test_malformed.py::{test}[{case_id}]"


KNOWN = {_id("test_malformed_input", c.id) for c in INPUT_CASES if c.known_issue} | \
        {_id("test_invalid_setting", c.id) for c in SETTING_CASES if c.known_issue}


@pytest.fixture
def faulty(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The real runtime behind the fault injector, plugged in as a user plugs a runtime (the worker process
    loads it too); no fault until a HARNESS_FAULT_* variable is set."""
    for fault in FAULTS:
        monkeypatch.delenv(f"HARNESS_FAULT_{fault}", raising=False)
    pytester.syspathinsert()  # a plugin module, not a conftest: the shipped suites sit outside this folder
    pytester.makepyfile(fault_plugin="""
from harness.testing.worker_fakes import faulty_genai

def pytest_harness_runtime_factory(config):
    return faulty_genai
""")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p fault_plugin")
    return monkeypatch


def run(pytester: pytest.Pytester, model: Path, suite: str, *args: str) -> tuple[pytest.RunResult, dict[str, set[str]]]:
    result = pytester.runpytest(f"--model={model}", "--harness-profile=smoke", "-p", "no:cacheprovider", "-rfEsx",
                                f"--harness-reports={pytester.path / 'reports'}", suite, *args)
    outcomes: dict[str, set[str]] = {"FAILED": set(), "XFAIL": set(), "ERROR": set()}
    for line in result.outlines:
        word, _, rest = line.partition(" ")
        if word in outcomes:
            outcomes[word].add(rest.split(" ")[0].rsplit("/", 1)[-1])  # the node id from the suite file on
    return result, outcomes


def test_injected_segfault_and_hang_fail_only_their_cases(
    pytester: pytest.Pytester, built_path: Path, faulty: pytest.MonkeyPatch
) -> None:
    faulty.setenv("HARNESS_FAULT_SEGFAULT", "👍")  # the emoji case
    faulty.setenv("HARNESS_FAULT_HANG", "日本語")  # the cjk case
    result, outcomes = run(pytester, built_path, MALFORMED, "--gate", "robustness_timeout_s=8")
    assert outcomes["FAILED"] == {_id("test_malformed_input", "emoji"), _id("test_malformed_input", "cjk")}
    # Everything else passes on the good model, but for the documented defects of onnxruntime-genai 0.18.0.
    assert outcomes["XFAIL"] <= KNOWN and not outcomes["ERROR"]
    counts = result.parseoutcomes()
    assert counts["passed"] == len(INPUT_CASES) + len(SETTING_CASES) - 2 - len(outcomes["XFAIL"]) - \
        counts.get("skipped", 0)
    result.stdout.fnmatch_lines(["emoji: crashed the model worker (SIGSEGV); expected a well-formed answer",
                                 "*Fatal Python error: Segmentation fault*"])
    result.stdout.fnmatch_lines(["cjk: hung: no answer within * s (worker killed); expected a well-formed answer"])
    result.stdout.fnmatch_lines(["*= 2 failed, * passed, * xfailed in *"])
    summary = json.loads(
        next((pytester.path / "reports").glob("*/robustness/malformed.json")).read_text(encoding="utf-8")
    )
    assert summary["outcomes"]["hung"] == 1
    assert summary["outcomes"]["crashed"] == 1  # the injected segfault: onnxruntime-genai 0.18.0 crashes on no case


def test_corrupted_state_is_caught_on_the_real_model(
    pytester: pytest.Pytester, built_path: Path, faulty: pytest.MonkeyPatch
) -> None:
    faulty.setenv("HARNESS_FAULT_CORRUPT", "שלום")  # the right-to-left case; later answers lose a token
    result, outcomes = run(pytester, built_path, MALFORMED, "-k", "right-to-left or emoji or cjk")
    assert outcomes["FAILED"] == {_id("test_malformed_input", "right-to-left")}
    result.assert_outcomes(passed=2, failed=1)
    # The known-good request is a raw continuation with an 8-token limit: the corrupted answers lose their first token.
    result.stdout.fnmatch_lines(["right-to-left: state corrupted: afterwards the known-good prompt got answered 7 "
                                 "tokens (length): * instead of * (tokens *); the input itself: answered, *"])


def test_the_fuzzers_pass_on_the_default_model(pytester: pytest.Pytester, built_path: Path) -> None:
    result, _ = run(pytester, built_path, FUZZ)
    result.assert_outcomes(passed=2)
    summary = json.loads(next((pytester.path / "reports").glob("*/robustness/fuzz.json")).read_text(encoding="utf-8"))
    assert summary["requests"] == 2 * 20 and summary["outcomes"]["hung"] == 0


def test_prompts_past_a_128k_context_are_refused_from_their_token_count(pytester: pytest.Pytester,
                                                                       built_path: Path) -> None:
    """The default model as a 128k-context model (its genai_config changed on a copy, the weights linked): every
    prompt built to pass the context, and one of exactly the context, is refused before any prefill, within the base
    time limit (a prefill of 131,072 tokens would take minutes here and count as hung)."""
    long = with_context(built_path, pytester.path / "context-128k", 131072)
    selected = "past-context or fills-context or over-context"
    result, _ = run(pytester, long, MALFORMED, "--gate", "robustness_timeout_s=10", "-k", selected)
    assert result.ret == 0 and result.parseoutcomes()["passed"] == 5, result.stdout.str()[-3000:]
    malformed = next((pytester.path / "reports").glob("*/robustness/malformed.json"))
    refused = json.loads(malformed.read_text(encoding="utf-8"))
    assert refused["outcomes"] == {"answered": 0, "rejected": 5, "crashed": 0, "hung": 0}, refused
