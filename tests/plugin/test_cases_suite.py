"""The cases suite on the fake runtime: wrong expectations fail readably, bad case files stop the run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.locations import suites_dir
from tests.plugin.test_plugin import builds, env, run

__all__ = ["env"]  # the fixture, imported for pytest

CASES = """\
cases:
  - id: right
    prompt: "capital of France?"
    assert: [{type: contains, value: Paris}, {type: stops-cleanly}]
  - id: wrong
    prompt: "capital of France?"
    assert:
      - {type: contains, value: Rome}
      - {type: stops-cleanly}
  - id: golden
    messages: [{role: user, content: "capital of France?"}]
    reference: Paris.
    keywords: [Paris]
"""


def cases_run(pytester: pytest.Pytester, env: dict[str, Path], cases: str, *args: str) -> pytest.RunResult:
    suite = pytester.path / "suite" / "test_cases.py"
    shutil.copy(suites_dir() / "test_cases.py", suite)
    path = pytester.path / "my_cases.yaml"
    path.write_text(cases, encoding="utf-8")
    return run(pytester, env, f"--cases={path}", *args, str(suite), suite=False)


def test_wrong_expectation_fails_with_prompt_answer_and_each_assertion(
    pytester: pytest.Pytester, env: dict[str, Path]
) -> None:
    result = cases_run(pytester, env, CASES)
    result.assert_outcomes(passed=5, failed=1)  # 2 asserted cases, 3 format checks, 1 domain score
    result.stdout.fnmatch_lines([
        "*_ test_case[[]wrong[]] _*",
        "case 'wrong' (*my_cases.yaml:5) failed: score 0.50 below its threshold 1.00",
        "  prompt: 'capital of France?'",
        "  answer: 'Paris.'",
        "  FAIL contains 'Rome': missing ['Rome']",
        "  ok   stops-cleanly: ended by eos after 7 tokens",
    ])


def test_domain_quality_below_its_gate_shows_prompt_expected_and_actual(
    pytester: pytest.Pytester, env: dict[str, Path]
) -> None:
    result = cases_run(pytester, env, CASES.replace("reference: Paris.", "reference: Rome is the capital."),
                       "-k", "domain_quality")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines([
        "domain quality below its gates: mean token_f1 0.00 over 1 cases, gate quality_token_f1_min at least "
        "0.5 (default)*",
        "  golden (*my_cases.yaml:10): F1 0.00, ROUGE-L 0.00, keywords 1.00",
        "    expected: 'Rome is the capital.'",
        "    actual:   'Paris.'",
    ])
    relaxed = cases_run(pytester, env, CASES.replace("reference: Paris.", "reference: Rome is the capital."),
                        "-k", "domain_quality", "--gate=quality_token_f1_min=0", "--gate=quality_rouge_l_min=0")
    relaxed.assert_outcomes(passed=1, deselected=5)


def test_a_runtime_that_never_stops_fails_the_format_checks(
    pytester: pytest.Pytester, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NEVER_STOPS", "1")
    result = cases_run(pytester, env, CASES, "-k", "right")
    result.assert_outcomes(failed=1, passed=1, deselected=4)  # the case's stops-cleanly; the form is still fine
    result.stdout.fnmatch_lines(["*FAIL stops-cleanly: ran to the length limit (128 tokens) without an eos token"])


@pytest.mark.parametrize(("cases", "expected"), [
    (CASES.replace("{type: contains, value: Rome}", "{type: contains, value: [Rome]}"),
     "ERROR: harness: *my_cases.yaml:8: case 'wrong', field assert[[]0[]].value: must be a string, got list*"),
    (CASES.replace("prompt: \"capital of France?\"\n    assert: [{", "prompt: 1\n    assert: [{"),
     "ERROR: harness: *my_cases.yaml:3: case 'right', field prompt: 1 is not of type 'string'*"),
], ids=["wrong-value", "wrong-type"])
def test_malformed_case_file_stops_the_session_with_one_line(
    pytester: pytest.Pytester, env: dict[str, Path], cases: str, expected: str
) -> None:
    result = cases_run(pytester, env, cases)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert builds(env) == 0  # stopped before building anything


def test_unknown_gate_stops_the_session(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    result = cases_run(pytester, env, CASES, "--gate=quality_f1=0.5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: harness: unknown gate 'quality_f1' (from the command line); known gates: *"])
