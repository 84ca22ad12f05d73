"""``harness merge`` and ``--harness-shard`` on the real default model (issue 24's proof).

Two shards of one run merge into that run's verdict, check for check. A run at ``--accuracy-level=1`` stands in for a
host with another compute path: the near-tie case ("What is 10 + 10?", see test_stability.py) is unstable as built
and fails in fp32 compute, so the merged verdict fails it on that host and names both, while the case that fails
everywhere fails on both.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import cli
from tests.e2e.support import ROOT
from tests.e2e.test_stability import CASES

pytestmark = pytest.mark.e2e
SUITES = [str(ROOT / "suites" / "test_cases.py"), str(ROOT / "suites" / "test_generation.py")]


def session(pytester: pytest.Pytester, model: Path, reports: str, *args: str) -> pytest.RunResult:
    cases = pytester.path / "cases.yaml"
    cases.write_text(CASES, encoding="utf-8")
    return pytester.runpytest_inprocess(*SUITES, "-p", "no:cacheprovider", f"--model={model}", f"--cases={cases}",
                                        f"--harness-reports={pytester.path / reports}", *args)


def outcomes(reports: Path) -> dict[str, str]:
    (results,) = reports.glob("*/results.json")
    return {test["id"]: test["outcome"] for test in json.loads(results.read_text(encoding="utf-8"))["tests"]}


def merged(pytester: pytest.Pytester, *folders: str) -> tuple[int, dict[str, dict[str, object]]]:
    out = pytester.path / ("merged-" + "-".join(folders))
    code = cli.main(["merge", *(str(pytester.path / folder) for folder in folders), "--out", str(out)])
    document = json.loads((out / "merged.json").read_text(encoding="utf-8"))
    return code, {check["id"]: check for check in document["checks"]}


def test_shards_merge_into_the_unsharded_verdict_and_hosts_disagree_by_name(pytester: pytest.Pytester,
                                                                            built_path: Path) -> None:
    whole = session(pytester, built_path, "whole")
    for index in (1, 2):
        session(pytester, built_path, f"shard{index}", f"--harness-shard={index}/2")
    session(pytester, built_path, "fp32-compute", "--accuracy-level=1")
    single = outcomes(pytester.path / "whole")
    assert whole.ret == pytest.ExitCode.TESTS_FAILED and single["test_cases.py::test_case[robust-fail]"] == "failed"

    code, joined = merged(pytester, "shard1", "shard2")
    assert {check_id: check["verdict"] for check_id, check in joined.items()} == single
    assert code == cli.EXIT_REGRESSION

    code, hosts = merged(pytester, "whole", "fp32-compute")
    near_tie, robust_fail = hosts["test_cases.py::test_case[near-tie]"], hosts["test_cases.py::test_case[robust-fail]"]
    assert list(near_tie["outcomes"].values()) == ["unstable", "failed"] and near_tie["verdict"] == "failed"
    assert set(robust_fail["outcomes"].values()) == {"failed"}
    assert hosts["test_cases.py::test_case[robust-pass]"]["verdict"] == "passed"
    assert code == cli.EXIT_REGRESSION
