"""``--harness-shard`` through the plugin, with the fake model: the shards run every check once, and ``harness
merge`` joins their reports into the unsharded run's verdict, failures included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import cli
from tests.plugin.test_plugin import env, run

__all__ = ["env"]  # the fixture, used by name


def outcomes(reports: Path) -> dict[str, str]:
    (results,) = reports.glob("*/results.json")
    return {test["id"]: test["outcome"] for test in json.loads(results.read_text(encoding="utf-8"))["tests"]}


@pytest.mark.parametrize("never_stops", [False, True], ids=["good-model", "seeded-defect"])
def test_merged_shards_give_the_unsharded_verdict(pytester: pytest.Pytester, env: dict[str, Path],
                                                   monkeypatch: pytest.MonkeyPatch, never_stops: bool) -> None:
    if never_stops:
        monkeypatch.setenv("FAKE_NEVER_STOPS", "1")  # answers never end their turn: a check fails
    whole = run(pytester, env, f"--harness-reports={pytester.path / 'whole'}")
    shards = [run(pytester, env, f"--harness-shard={index}/3",
                  f"--harness-reports={pytester.path / 'shards' / str(index)}") for index in (1, 2, 3)]
    ran = [sum(result.parseoutcomes().get(name, 0) for name in ("passed", "failed")) for result in shards]
    assert sum(ran) == 4 and sorted(ran) == [1, 1, 2]
    shards[0].stdout.fnmatch_lines(["harness: shard 1/3 of the checks (--harness-shard)*"])
    single = outcomes(pytester.path / "whole")
    assert ("failed" in single.values()) == never_stops
    code = cli.main(["merge", str(pytester.path / "shards"), "--out", str(pytester.path / "merged")])
    merged = json.loads((pytester.path / "merged" / "merged.json").read_text(encoding="utf-8"))
    assert {check["id"]: check["verdict"] for check in merged["checks"]} == single
    assert code == (cli.EXIT_REGRESSION if never_stops else cli.EXIT_OK) and whole.ret == int(never_stops)


def test_a_bad_shard_stops_at_start_with_one_line(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    result = run(pytester, env, "--harness-shard=3/2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: harness: --harness-shard '3/2' (from the command line) is not a shard of 2:*"])
