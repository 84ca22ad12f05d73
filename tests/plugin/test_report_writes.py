"""Nothing lost: report files are written whole or not at all, one that cannot be written is one line and fails
the session while the others are still written, and a session that ends early still writes results.json.

The plugin runs on the fakes through pytester (in-process, so the outer test's monkeypatch reaches it)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

import harness.report.results
from harness.fsutil import write_text_atomic
from harness.testing.fakes import FAKES_CONFTEST, write_hf_folder


# -- the helper ------------------------------------------------------------------------------------
def test_write_text_atomic_writes_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_text_atomic(path, "first")
    write_text_atomic(path, "second, é")
    assert path.read_text(encoding="utf-8") == "second, é"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left


def _disk_full(source: object, target: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("failure", ["disk full at the rename", "text that cannot be encoded"])
def test_a_failed_write_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    path = tmp_path / "results.json"
    path.write_text('{"old": true}', encoding="utf-8")
    text = '{"new": true}'
    if failure == "disk full at the rename":
        monkeypatch.setattr(os, "replace", _disk_full)
    else:
        text += "\ud800"  # a lone surrogate: utf-8 refuses it halfway through the write
    with pytest.raises((OSError, UnicodeEncodeError)):
        write_text_atomic(path, text)
    assert path.read_text(encoding="utf-8") == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


# -- the plugin ------------------------------------------------------------------------------------
CONFTEST = FAKES_CONFTEST + """
import os

import pytest
from harness.testing.fakes import SteadyYardstick


def make_builder(settings):  # in place of the fakes' own: a build that fails when a test asks
    return FakeBuilder(error=os.environ.get("FAKE_BUILD_ERROR"))


@pytest.fixture(scope="session")
def harness_yardstick():
    return SteadyYardstick()


def pytest_collection_finish(session):
    if os.environ.get("FAKE_HOOK_BUG"):
        raise RuntimeError("a bug in a hook")
"""

CHECKS = """
import os
from pathlib import Path

import pytest


def test_passes(record_property):
    record_property("ppl_ratio", 1.02)


def test_fails():
    assert 1 == 2


def test_ends_the_session():
    if os.environ.get("BLOCK"):  # a folder where the report file goes: writing it fails as on a broken disk
        [run] = [p for p in Path(os.environ["REPORTS"]).iterdir() if p.is_dir()]
        (run / os.environ["BLOCK"]).mkdir()
    if os.environ.get("INTERRUPT"):
        raise KeyboardInterrupt


def test_never_runs_when_interrupted():
    pass
"""

ENV = ("HARNESS_MODEL", "HARNESS_PRECISION", "HARNESS_PROFILE", "HARNESS_BASELINE", "FAKE_BUILD_ERROR",
       "FAKE_HOOK_BUG", "BLOCK", "INTERRUPT")
FILES = ("results.json", "summary.md", "junit.xml", "report.html")


@pytest.fixture
def env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_checks=CHECKS)
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    reports = pytester.path / "reports"
    monkeypatch.setenv("REPORTS", str(reports))
    return {"cache": pytester.path / "cache", "model": write_hf_folder(pytester.path / "hf"), "reports": reports}


def run(pytester: pytest.Pytester, env: dict[str, Path], *args: str) -> tuple[pytest.RunResult, Path]:
    """The plugin on the fake model, smoke profile; the result and the run's report folder."""
    before = set(env["reports"].iterdir()) if env["reports"].is_dir() else set()
    result = pytester.runpytest(f"--model={env['model']}", f"--harness-cache-dir={env['cache']}",
                                "--harness-profile=smoke", "test_checks.py", *args,
                                no_reraise_ctrlc=True)  # the inner session's Ctrl-C ends it, not this one
    [folder] = [p for p in env["reports"].iterdir() if p.is_dir() and p not in before]
    return result, folder


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + result.stderr.str()


def harness_lines(result: pytest.RunResult, start: str) -> list[str]:
    return [line for line in result.stdout.lines if line.startswith(f"harness: {start}")]


def assert_the_others_written(folder: Path, failed: str) -> None:
    """The other reports are whole (results.json valid JSON with the checks) and no temporary file is left."""
    for name in FILES:
        if name != failed:
            assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    data = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    outcomes = {test["id"]: test["outcome"] for test in data["tests"]}
    assert outcomes["test_checks.py::test_passes"] == "passed" and outcomes["test_checks.py::test_fails"] == "failed"
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_report_that_cannot_be_written_is_one_line_and_fails_the_session(
        pytester: pytest.Pytester, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLOCK", "summary.md")
    result, folder = run(pytester, env)
    [line] = harness_lines(result, "could not")
    assert line.startswith(f"harness: could not write {folder / 'summary.md'}: [Errno ")  # EISDIR on Linux
    assert line.endswith("; check the reports folder and rerun")
    assert "Traceback" not in output(result)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR  # not 1: a CI step reading summary.md on 1 finds none
    assert (folder / "summary.md").is_dir()
    assert_the_others_written(folder, "summary.md")
    result.stdout.fnmatch_lines([f"harness: report {folder} (results.json, report.html, junit.xml)"])


def test_a_full_disk_says_free_space(pytester: pytest.Pytester, env: dict[str, Path],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC at the rename of junit.xml (any other file is renamed as usual)."""
    rename = os.replace

    def replace(source: Any, target: Any) -> None:
        if Path(target).name == "junit.xml":
            _disk_full(source, target)
        rename(source, target)

    monkeypatch.setattr(os, "replace", replace)  # what write_text_atomic calls
    result, folder = run(pytester, env)
    assert harness_lines(result, "could not") == [
        f"harness: could not write {folder / 'junit.xml'}: [Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}; "
        "free space and rerun"]
    assert "Traceback" not in output(result)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    assert not (folder / "junit.xml").exists()
    assert_the_others_written(folder, "junit.xml")


def test_a_report_that_cannot_be_rendered_is_an_internal_error_line(
        pytester: pytest.Pytester, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> str:
        raise RuntimeError("a bug in the summary")

    monkeypatch.setattr(harness.report.results, "summary_markdown", broken)
    result, folder = run(pytester, env)
    [line] = harness_lines(result, "internal error")
    assert line == (f"harness: internal error, could not write {folder / 'summary.md'}: RuntimeError: a bug in the "
                    f"summary ({Path(__file__).name}:{broken.__code__.co_firstlineno + 1}); please report it")
    assert "Traceback" not in output(result)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    assert not (folder / "summary.md").exists()
    assert_the_others_written(folder, "summary.md")


def test_a_comparison_that_fails_is_an_internal_error_line(
        pytester: pytest.Pytester, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """results.json is still written, without a comparison, saying the session failed."""
    run(pytester, env)

    def broken(*args: Any) -> object:
        raise RuntimeError("a bug in the comparison")

    monkeypatch.setattr(harness.report.results, "compare_runs", broken)
    result, folder = run(pytester, env, f"--harness-baseline={env['reports']}")
    [line] = harness_lines(result, "internal error")
    assert line.startswith(f"harness: internal error, could not compare with the baseline {env['reports']}: "
                           "RuntimeError: a bug in the comparison (")
    assert "Traceback" not in output(result)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    data = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    assert data["run"]["exit_status"] == pytest.ExitCode.INTERNAL_ERROR and data["baseline"] is None
    assert_the_others_written(folder, "")


# name: (environment, arguments, the exit status, the checks results.json holds)
ENDINGS: dict[str, tuple[dict[str, str], list[str], pytest.ExitCode, list[str]]] = {
    # not test_ends_the_session: it never finished (it was no pass, as its passed setup alone once said)
    "interrupted": ({"INTERRUPT": "1"}, [], pytest.ExitCode.INTERRUPTED, ["test_passes", "test_fails"]),
    "-x": ({}, ["-x"], pytest.ExitCode.TESTS_FAILED, ["test_passes", "test_fails"]),
    "an internal error": ({"FAKE_HOOK_BUG": "1"}, [], pytest.ExitCode.INTERNAL_ERROR, []),
    "a build that fails at collection": ({"FAKE_BUILD_ERROR": "no disk"}, [], pytest.ExitCode.USAGE_ERROR, []),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_session_that_ends_early_still_writes_results(pytester: pytest.Pytester, env: dict[str, Path],
                                                        monkeypatch: pytest.MonkeyPatch, ending: str) -> None:
    variables, args, status, checks = ENDINGS[ending]
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    result, folder = run(pytester, env, *args)
    assert result.ret == status, output(result)
    data = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    assert data["run"]["exit_status"] == status
    assert [test["id"] for test in data["tests"]] == [f"test_checks.py::{name}" for name in checks]
    assert not harness_lines(result, "could not") and not harness_lines(result, "internal error")
    assert all((folder / name).is_file() for name in FILES)
