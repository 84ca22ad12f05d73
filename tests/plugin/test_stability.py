"""Verdicts over compute paths, through the plugin: a fake int4 model (one MatMulNBits node at accuracy level 4)
gets a derived fp32-compute twin, and two fake runtimes whose answers part at a chosen token stand in for the
two paths."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.locations import suites_dir
from harness.preparation.compute_paths import accuracy_levels
from harness.testing.fakes import write_hf_folder

CONFTEST = """
import os
from harness.preparation.compute_paths import accuracy_levels, host_dependent
from harness.testing.fakes import FakeBuilder, FakeRuntime

def make_builder(settings):
    level = os.environ.get("FAKE_LEVEL")
    return FakeBuilder(accuracy_level=int(level) if level else None)

def pytest_harness_builders(config):
    return {"model-builder": make_builder}

def make_runtime(path, ep):
    # Like the real model, the answer depends on the graph's compute: the two paths part at the 25th
    # character, 'Rome' with int8 activations (accuracy level 4), 'Napoli' in fp32; a near-tie (0.04).
    fp32 = not host_dependent(accuracy_levels(path))
    return FakeRuntime(path, answer=lambda prompt: "The capital of Italy is " + ("Napoli." if fp32 else "Rome."),
                       margin=lambda position: 0.04 if position == 24 else 3.0)


def pytest_harness_runtime_factory(config):
    return make_runtime
"""
CASES = """\
cases:
  - id: near-tie
    messages: [{role: user, content: "capital of Italy?"}]
    assert: [{type: contains, value: Rome}]
  - id: robust-pass
    messages: [{role: user, content: "capital of Italy?"}]
    assert: [{type: contains, value: Italy}, {type: stops-cleanly}]
  - id: robust-fail
    messages: [{role: user, content: "capital of Italy?"}]
    assert: [{type: contains, value: Paris}]
"""


Run = Callable[..., pytest.RunResult]


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Run:
    pytester.makeconftest(CONFTEST)
    monkeypatch.setenv("FAKE_LEVEL", "4")
    for name in ("HARNESS_MODEL", "HARNESS_UNSTABLE", "HARNESS_ACCURACY_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    suite = pytester.path / "suite" / "test_cases.py"
    suite.parent.mkdir()
    shutil.copy(suites_dir() / "test_cases.py", suite)
    cases = pytester.path / "cases.yaml"
    cases.write_text(CASES, encoding="utf-8")
    model = write_hf_folder(pytester.path / "hf")

    def go(*args: str, case: str = "", subprocess: bool = False) -> pytest.RunResult:
        """The case assertions only (of ``case`` when given)."""
        select = "test_case and not format and not quality" + (f" and {case}" if case else "")
        runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
        return runner(f"--model={model}", f"--harness-cache-dir={pytester.path / 'cache'}", f"--cases={cases}",
                      "-k", select, *args, str(suite))

    return go


def latest_report(pytester: pytest.Pytester) -> Path:
    """The newest run folder with a results.json (xdist workers claim folders that stay without one)."""
    return sorted(p for p in (pytester.path / "reports").iterdir() if (p / "results.json").is_file())[-1]


def test_the_paths_disagree_on_a_near_tie_and_agree_on_robust_cases(pytester: pytest.Pytester, run: Run) -> None:
    result = run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the robust failure only
    outcomes = result.parseoutcomes()
    assert (outcomes["passed"], outcomes["failed"], outcomes["unstable"]) == (1, 1, 1)
    result.stdout.fnmatch_lines([
        "harness: derived the fp32-compute twin in * s (weights shared) -> *",
        "harness: greedy checks also judge the fp32-compute twin (accuracy_level 1): *",
    ])
    result.stdout.fnmatch_lines([
        "case 'robust-fail' (*cases.yaml:*) failed: score 0.00 below its threshold 1.00",
        "*FAIL contains 'Paris'*",
        "  weakest decisions (logit lead over the runner-up): token 24: 'R' over 'S' by 0.040; *",
        "  fails on the fp32-compute twin (accuracy_level 1) path too: 'The capital of Italy is Napoli.'",
    ])
    result.stdout.fnmatch_lines([
        "*= harness: unstable verdicts =*",
        "*UNSTABLE *test_case[[]near-tie[]]",
        "  UNSTABLE: passes on as built (accuracy_level 4), fails on fp32-compute twin (accuracy_level 1); *",
        "  the answers part at token 24: as built (accuracy_level 4) chose 'R' over 'S' by 0.040; "
        "fp32-compute twin (accuracy_level 1) chose 'N' over 'O' by 0.040",
    ])
    result.stdout.fnmatch_lines(["*= 1 failed, 1 passed, *, 1 unstable in *"])


def test_unstable_is_its_own_outcome_in_every_report(pytester: pytest.Pytester, run: Run) -> None:
    run(case="near-tie").assert_outcomes(passed=0)  # not a plain pass
    folder = latest_report(pytester)
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    (check,) = [t for t in results["tests"] if "near-tie" in t["id"]]
    assert check["outcome"] == "unstable" and results["totals"]["unstable"] == 1
    assert check["message"].startswith("UNSTABLE: passes on as built")
    assert check["properties"]["compute_paths"] == {"as built (accuracy_level 4)": "passed",
                                                    "fp32-compute twin (accuracy_level 1)": "failed"}
    assert check["metrics"]["margin_min"] == 0.04
    assert check["properties"]["weakest_decisions"][0] == "token 24: 'R' over 'S' by 0.040"
    assert results["provenance"]["accuracy_levels"] == {"4": 1} and results["provenance"]["twin_model"]
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert "- **unstable verdict** in `" in summary and "accuracy level 4 · cpu " in summary
    assert summary.startswith("## PASSED with unstable verdicts")
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert 'class="banner unstable"' in html and "<b>unstable verdict</b>" in html
    assert "weakest decisions: token 24: &#x27;R&#x27; over &#x27;S&#x27;" in html
    (case,) = ElementTree.parse(folder / "junit.xml").getroot().iter("testcase")
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["harness_outcome"] == "unstable" and case.find("failure") is None
    assert (case.findtext("system-out") or "").startswith("UNSTABLE")


def test_unstable_travels_from_xdist_workers(pytester: pytest.Pytester, run: Run) -> None:
    pytest.importorskip("xdist")
    result = run("-n", "2", subprocess=True)
    assert result.parseoutcomes()["unstable"] == 1
    results = json.loads((latest_report(pytester) / "results.json").read_text(encoding="utf-8"))
    assert results["totals"]["unstable"] == 1 and results["run"]["xdist_workers"] == 2


def test_unstable_fail_fails_the_run(pytester: pytest.Pytester, run: Run) -> None:
    result = run("--unstable=fail", case="near-tie")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["UNSTABLE: passes on as built*", "(--unstable=fail from the command line)"])
    results = json.loads((latest_report(pytester) / "results.json").read_text(encoding="utf-8"))
    assert results["totals"]["failed"] == 1 and results["totals"]["unstable"] == 0


def test_unstable_policy_from_the_environment(pytester: pytest.Pytester, run: Run,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_UNSTABLE", "fail")
    run(case="near-tie").stdout.fnmatch_lines(["(--unstable=fail from environment variable HARNESS_UNSTABLE)"])


def test_a_bad_policy_is_one_line_at_start(run: Run) -> None:
    result = run("--unstable=maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: harness: --unstable 'maybe' (from the command line) is not one of warn, fail"])


def test_twin_is_derived_once_and_shares_the_weights(pytester: pytest.Pytester, run: Run) -> None:
    run(case="robust-pass").assert_outcomes(passed=1)
    again = run(case="robust-pass")
    again.assert_outcomes(passed=1)
    assert "derived the fp32-compute twin" not in again.stdout.str()  # cached next to the model
    again.stdout.fnmatch_lines(["harness: compute accuracy_level 4 (int8 activations) x1"])  # read at start
    provenance = json.loads((latest_report(pytester) / "provenance.json").read_text(encoding="utf-8"))
    built, twin = Path(provenance["built_model"]), Path(provenance["twin_model"])
    assert twin.parent == built.parent  # next to the model in the cache
    assert (twin / "model.onnx.data").stat().st_ino == (built / "model.onnx.data").stat().st_ino
    assert accuracy_levels(twin) == {1: 1} and accuracy_levels(built) == {4: 1}


def test_a_model_without_cpu_dependent_kernels_has_one_path(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LEVEL", "")  # an unquantized model: no MatMulNBits nodes
    result = run()
    result.assert_outcomes(passed=1, failed=2)  # one path, computing in fp32: no verdict is unstable
    result.stdout.fnmatch_lines(["harness: compute path: no MatMulNBits nodes (unquantized: one compute path *"])
    assert "twin" not in result.stdout.str()


def test_accuracy_level_1_validates_the_fp32_compute_path(pytester: pytest.Pytester, run: Run) -> None:
    result = run("--accuracy-level=1")
    result.assert_outcomes(passed=1, failed=2)  # the near-tie fails: the model is now the fp32 path
    result.stdout.fnmatch_lines(["harness: compute accuracy levels known after the build; tested at accuracy_level 1 "
                                 "(--accuracy-level)",
                                 "harness: derived the accuracy_level 1 variant in * s (weights shared) -> *",
                                 "harness: compute path: accuracy_level 1 (fp32 compute) x1"])
    provenance = json.loads((latest_report(pytester) / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["accuracy_levels"] == {"1": 1} and provenance["twin_model"] is None
    assert provenance["accuracy_level_setting"] == 1


def test_a_bad_accuracy_level_is_one_line_at_start(run: Run) -> None:
    result = run("--accuracy-level=7")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: harness: --accuracy-level '7' (from the command line) is not one of 0, 1, 2, 3, 4"])
