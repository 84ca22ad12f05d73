"""Verdicts over compute paths on the real default model: a real near-tie is unstable, robust cases are not.

The near-tie: asked "What is 10 + 10?", the int4 model as built (int8 activations) answers "10 + 10 = 20",
on this AVX-512 host and on an emulated AVX2-only host alike (`qemu-x86_64 -cpu EPYC-Milan`: its margin at
the deciding token is 0.25 here and 0.17 there); computing in fp32 it chooses " equals" over " =" at token 6
and answers "10 + 10 equals 110.". A case that wants 20 is a pass on one path and a fail on the other:
without the twin, its verdict depends on the compute path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.checks.cases import load_cases
from harness.checks.output_format import answer_context
from harness.preparation.compute_paths import accuracy_levels
from harness.preparation.pipeline import PreparedModel
from harness.runtime.genai import GenAIRuntime
from harness.session import HarnessSession
from tests.e2e.support import ROOT, progress

CASES_SUITE = str(ROOT / "suites" / "test_cases.py")
CASES = """\
cases:
  - id: near-tie
    messages: [{role: user, content: "What is 10 + 10?"}]
    options: {max_new_tokens: 32}
    assert: [{type: regex, value: '\\b20\\b'}]
  - id: robust-pass
    messages: [{role: user, content: "Which city is the capital of Germany?"}]
    assert: [{type: contains, value: Berlin}, {type: stops-cleanly}]
  - id: robust-fail
    messages: [{role: user, content: "Which city is the capital of Germany?"}]
    assert: [{type: contains, value: Munich}]
"""


@pytest.fixture(scope="module")
def twin(built: HarnessSession) -> PreparedModel:
    model = built.twin(progress)
    assert model is not None, "the default int4 model computes at accuracy level 4: it must have a twin"
    return model


@pytest.fixture
def cases(pytester: pytest.Pytester) -> Path:
    path = pytester.path / "cases.yaml"
    path.write_text(CASES, encoding="utf-8")
    return path


def run_cases(pytester: pytest.Pytester, model: Path, cases: Path, *args: str, case: str = "") -> pytest.RunResult:
    """The case assertions (of ``case`` when given), in the pytester folder."""
    select = "test_case and not format and not quality" + (f" and {case}" if case else "")
    return pytester.runpytest_inprocess(CASES_SUITE, "-p", "no:cacheprovider", f"--model={model}", f"--cases={cases}",
                                        f"--harness-reports={pytester.path / 'reports'}", "-k", select, *args)


def test_twin_shares_the_weights_and_computes_in_fp32(built_path: Path, twin: PreparedModel) -> None:
    assert accuracy_levels(built_path) == {4: 151} and accuracy_levels(twin.path) == {1: 151}
    assert twin.twin_of == built_path and twin.path.parent == built_path.parent  # cached next to the model
    for item in built_path.iterdir():
        if item.name.startswith(".") or item.name == "model.onnx":
            continue
        assert (twin.path / item.name).stat().st_ino == item.stat().st_ino, item.name  # linked, not copied
    assert (twin.path / "model.onnx").read_bytes() != (built_path / "model.onnx").read_bytes()


@pytest.fixture(scope="module")
def runtimes(built_path: Path, twin: PreparedModel) -> Iterator[tuple[GenAIRuntime, GenAIRuntime]]:
    pair = GenAIRuntime(built_path), GenAIRuntime(twin.path)
    yield pair
    for runtime in pair:
        runtime.close()


def test_the_near_tie_passes_on_one_path_and_fails_on_the_other(runtimes: tuple[GenAIRuntime, GenAIRuntime],
                                                                 tmp_path: Path) -> None:
    (tmp_path / "cases.yaml").write_text(CASES, encoding="utf-8")
    (case, *_) = load_cases([tmp_path / "cases.yaml"])
    verdicts = []
    for runtime in runtimes:
        answer = runtime.generate(case.prompt, case.options)
        assert len(answer.margins) == len(answer.runner_up_ids) == answer.output_tokens
        verdicts.append(case.passes([answer], answer_context(runtime)))
    assert verdicts == [True, False]


def test_the_harness_reports_the_near_tie_unstable(pytester: pytest.Pytester, built_path: Path, cases: Path) -> None:
    result = run_cases(pytester, built_path, cases)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the robust failure
    assert (result.parseoutcomes()["passed"], result.parseoutcomes()["failed"],
            result.parseoutcomes()["unstable"]) == (1, 1, 1)
    result.stdout.fnmatch_lines([
        "UNSTABLE *test_case[[]near-tie[]]",
        "  UNSTABLE: passes on as built (accuracy_level 4), fails on fp32-compute twin (accuracy_level 1); *",
        "  the answers part at token 6: as built (accuracy_level 4) chose * by *; "
        "fp32-compute twin (accuracy_level 1) chose * by *",
    ])
    result.stdout.fnmatch_lines([
        "case 'robust-fail' (*) failed: score 0.00 below its threshold 1.00",
        "  answer: 'The capital of Germany is Berlin.'",
        "  FAIL contains 'Munich': missing ['Munich']",
        "  weakest decisions (logit lead over the runner-up): token *",
        "  fails on the fp32-compute twin (accuracy_level 1) path too, with the same answer",
    ])


def test_unstable_fail_fails_the_run_on_the_near_tie(pytester: pytest.Pytester, built_path: Path,
                                                    cases: Path) -> None:
    result = run_cases(pytester, built_path, cases, "--unstable=fail", case="near-tie")
    result.assert_outcomes(failed=1, deselected=6)
    result.stdout.fnmatch_lines(["(--unstable=fail from the command line)"])


def test_the_fp32_compute_build_fails_the_near_tie_without_a_twin(pytester: pytest.Pytester, built_path: Path,
                                                                   cases: Path) -> None:
    """--accuracy-level 1: the model under test is the fp32 path, identical on every CPU: no twin, a plain verdict."""
    result = run_cases(pytester, built_path, cases, "--accuracy-level=1")
    result.assert_outcomes(passed=1, failed=2, deselected=4)
    assert "fp32-compute twin" not in result.stdout.str()
    (report,) = (pytester.path / "reports").iterdir()
    assert json.loads((report / "provenance.json").read_text(encoding="utf-8"))["accuracy_levels"] == {"1": 151}
