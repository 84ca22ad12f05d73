"""``harness merge``: one verdict from runs on several hosts and from the shards of one run, on written results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import cli
from harness.report.merge import merge
from harness.report.runs import FORMAT, CompareError

AVX512 = {"system": "Linux 6.8", "cpu": "AMD EPYC", "isa": "avx512-vnni", "cores": "2", "python": "3.12.3"}
WINDOWS = {"system": "Windows 11", "cpu": "Intel Core i7-1185G7", "isa": "avx512-vnni", "cores": "8",
           "python": "3.12.8"}
MAC = {"system": "Darwin 24.1", "cpu": "Apple M2", "isa": "arm-i8mm", "cores": "8", "python": "3.12.7"}


def write(folder: Path, name: str, outcomes: dict[str, str], machine: dict[str, str] = AVX512,
          shard: str | None = None, level: str = "as built", model: str = "ab" * 32, exit_status: int | None = None,
          metrics: dict[str, dict[str, float]] | None = None, findings: dict[str, str] | None = None) -> Path:
    tests = [{"id": test_id, "outcome": outcome, "message": None if outcome == "passed" else f"{test_id} said no",
              "metrics": (metrics or {}).get(test_id, {}), "series": {},
              "findings": [{"kind": "k", "text": text}] if (text := (findings or {}).get(test_id)) else []}
             for test_id, outcome in outcomes.items()]
    bad = any(outcome in ("failed", "error") for outcome in outcomes.values())
    status = exit_status if exit_status is not None else int(bad)
    totals = {outcome: list(outcomes.values()).count(outcome) for outcome in set(outcomes.values())}
    data: dict[str, Any] = {
        "format": FORMAT, "schema_version": 2,
        "run": {"id": name, "started": f"2026-12-06T10:00:0{len(name) % 10}+00:00", "exit_status": status,
                "shard": shard, "duration_s": 10.0},
        "key": {"model_sha256": model, "precision": "int4", "accuracy_level": level, "ep": "cpu",
                "machine": f"{machine['cpu']}, {machine['isa']}, {machine['cores']} cores"},
        "provenance": {"machine": machine, "model_name": "tiny", "model": "tiny", "source_kind": "hf",
                       "source_sha256": model, "precision": "int4", "builder": "model-builder", "ep": "cpu",
                       "profile": "smoke", "versions": {}},
        "totals": totals, "tests": tests}
    run = folder / name
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(data), encoding="utf-8")
    return run


CHECKS = {f"test_x.py::test_{i}": "passed" for i in range(7)}


def test_a_check_failing_on_one_host_fails_the_merge_and_is_shown_side_by_side(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    linux = write(tmp_path, "linux", CHECKS)
    windows = write(tmp_path, "windows", {**CHECKS, "test_x.py::test_3": "failed"}, WINDOWS)
    mac = write(tmp_path, "mac", {**CHECKS, "test_x.py::test_5": "unstable"}, MAC)
    code = cli.main(["merge", str(linux), str(windows), str(mac), "--out", str(tmp_path / "merged")])
    out = capsys.readouterr().out
    assert code == cli.EXIT_REGRESSION
    assert "FAILED: 1 of 7 checks fail or are missing on some of 3 hosts" in out
    assert "FAILED   test_x.py::test_3: failed on host 2" in out
    assert "UNSTABLE test_x.py::test_5: unstable on host 3" in out
    summary = (tmp_path / "merged" / "summary.md").read_text(encoding="utf-8")
    assert "| `test_x.py::test_3` | passed | **failed** | passed |" in summary
    assert "Windows · Intel Core i7-1185G7 (avx512-vnni) · Python 3.12" in summary
    assert "- `test_x.py::test_3` on H2: test_x.py::test_3 said no" in summary
    merged = json.loads((tmp_path / "merged" / "merged.json").read_text(encoding="utf-8"))
    assert merged["verdict"] == "failed" and merged["totals"] == {"failed": 1, "missing": 0, "unstable": 1,
                                                                  "passed": 5, "skipped": 0}


def test_hosts_that_all_pass_pass_with_their_timings_and_findings_side_by_side(tmp_path: Path) -> None:
    timed = "test_x.py::test_0"
    write(tmp_path, "a", CHECKS, metrics={timed: {"decode_tokens_per_s": 110.0, "case_score": 1.0}},
          findings={"test_x.py::test_1": "user text CAN switch roles"})
    write(tmp_path, "b", CHECKS, MAC, metrics={timed: {"decode_tokens_per_s": 240.0}},
          findings={"test_x.py::test_1": "user text CAN switch roles"})
    merged = merge([tmp_path])  # a folder of runs, as a CI job downloads its legs' artifacts
    assert merged.passed and merged.verdict == "passed"
    assert merged.headline() == "PASSED on all 2 hosts with 1 finding: 7 checks"
    check = next(c for c in merged.checks if c.id == timed)
    assert list(check.timings.values()) == [{"decode_tokens_per_s": 110.0}, {"decode_tokens_per_s": 240.0}]


def test_shards_are_joined_into_the_verdict_of_one_run(tmp_path: Path) -> None:
    ids = sorted(CHECKS)
    whole = write(tmp_path / "whole", "whole", {**CHECKS, ids[2]: "failed"})
    write(tmp_path / "shards", "s1", {i: ("failed" if i == ids[2] else "passed") for i in ids[0::2]}, shard="1/2")
    write(tmp_path / "shards", "s2", {i: "passed" for i in ids[1::2]}, shard="2/2")
    joined = merge([tmp_path / "shards"])
    assert len(joined.legs) == 1 and joined.legs[0].shards == ["1/2", "2/2"]
    single = json.loads((whole / "results.json").read_text(encoding="utf-8"))
    assert {c.id: c.verdict for c in joined.checks} == {t["id"]: t["outcome"] for t in single["tests"]}
    assert not joined.passed and joined.problems == ()


@pytest.mark.parametrize(("shards", "problem"), [
    (["1/3", "3/3"], "shard 2 of 3 is missing: pass every shard's run"),
    (["1/2", "1/2", "2/2"], "shard 1 of 2 is given twice"),
])
def test_a_missing_or_doubled_shard_fails_the_merge(tmp_path: Path, shards: list[str], problem: str) -> None:
    for number, shard in enumerate(shards):
        index = int(shard.split("/")[0])
        write(tmp_path, f"s{number}", {f"test_x.py::test_{index}_{number}": "passed"}, shard=shard)
    merged = merge([tmp_path])
    assert not merged.passed and any(problem in line for line in merged.problems)


def test_a_check_one_host_did_not_run_is_missing_and_fails(tmp_path: Path) -> None:
    write(tmp_path, "a", CHECKS)
    write(tmp_path, "b", {k: v for k, v in CHECKS.items() if k != "test_x.py::test_6"}, MAC)
    merged = merge([tmp_path])
    assert merged.counts["missing"] == 1 and not merged.passed


def test_a_run_that_did_not_finish_fails_the_merge(tmp_path: Path) -> None:
    write(tmp_path, "a", CHECKS)
    write(tmp_path, "b", CHECKS, MAC, exit_status=2)  # interrupted
    merged = merge([tmp_path])
    assert not merged.passed and "did not finish (pytest exit status 2)" in merged.problems[0]


@pytest.mark.parametrize(("make", "problem"), [
    (lambda tmp: [write(tmp, "a", CHECKS), write(tmp, "b", CHECKS, MAC, model="cd" * 32)],
     "the runs test different models or precisions"),
    (lambda tmp: [write(tmp, "a", CHECKS)], "needs the runs of at least two hosts, or the shards of one run"),
    (lambda tmp: [write(tmp, "a", CHECKS), tmp / "nowhere"], "no such file or folder"),
    (lambda tmp: [(tmp / "empty").mkdir() or tmp / "empty"], "holds no run"),
])
def test_runs_that_cannot_be_merged_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            make: Any, problem: str) -> None:
    paths = [str(path) for path in make(tmp_path)]
    with pytest.raises(CompareError, match=problem):
        merge([Path(path) for path in paths])
    assert cli.main(["merge", *paths, "--out", str(tmp_path / "merged")]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1


def test_fewer_hosts_than_expected_fail_the_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "a", CHECKS)
    write(tmp_path, "b", CHECKS, MAC)
    assert cli.main(["merge", str(tmp_path), "--hosts", "2", "--out", str(tmp_path / "two")]) == cli.EXIT_OK
    assert cli.main(["merge", str(tmp_path), "--hosts", "3", "--out", str(tmp_path / "three")]) == cli.EXIT_REGRESSION
    assert "PROBLEM 2 hosts ran, 3 expected (--hosts): a leg uploaded no run" in capsys.readouterr().out
