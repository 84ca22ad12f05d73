"""Bad input to the ``harness`` command line is one line on stderr and exit 2, never a traceback nor exit 3.

Each row of ``ROWS`` builds what it needs under a fresh folder and returns the arguments; the baselines' own rows
are in ``tests/unit/test_baseline_validation.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import cli
from tests.unit.test_baseline_validation import results, write

Make = Callable[[Path], list[str]]  # writes what the row needs under the folder given; returns harness's arguments


def two_runs(tmp: Path) -> tuple[str, str]:
    base = write(tmp / "reports" / "base", results("base", "2026-11-20T10:00:00+00:00"))
    current = write(tmp / "reports" / "current", results("current", "2026-11-24T10:00:00+00:00"))
    return str(base.parent), str(current.parent)


def compare(*options: str) -> Make:
    return lambda tmp: ["compare", *two_runs(tmp), *options]


def history(*options: str) -> Make:
    def make(tmp: Path) -> list[str]:
        two_runs(tmp)
        return ["history", str(tmp / "reports"), *[option.replace("TMP", str(tmp)) for option in options]]
    return make


def file(tmp: Path, name: str, content: bytes) -> Path:
    (tmp / name).write_bytes(content)
    return tmp / name


def pyproject(content: bytes) -> Make:
    return lambda tmp: ["gates", "--pyproject", str(file(tmp, "pyproject.toml", content))]


ROWS: list[Any] = [
    # numbers
    pytest.param(history("--last", "-1"), "argument --last: -1 is not 1 or more", id="last-negative"),
    pytest.param(history("--last", "0"), "argument --last: 0 is not 1 or more", id="last-zero"),
    pytest.param(history("--last", "two"), "argument --last: 'two' is not a whole number", id="last-not-a-number"),
    pytest.param(history("--last", "1.5"), "argument --last: '1.5' is not a whole number", id="last-a-fraction"),
    pytest.param(history("--last", "9" * 5000), "is not a whole number", id="last-too-many-digits"),
    pytest.param(compare("--busy-limit", "-5"), "argument --busy-limit: -5 is not between 0 and 100",
                 id="busy-limit-negative"),
    pytest.param(compare("--busy-limit", "nan"), "argument --busy-limit: nan is not between 0 and 100",
                 id="busy-limit-nan"),
    pytest.param(compare("--busy-limit", "lots"), "argument --busy-limit: 'lots' is not a number",
                 id="busy-limit-not-a-number"),
    pytest.param(compare("--timing-threshold", "inf"), "argument --timing-threshold: inf is not a fraction above 0",
                 id="timing-threshold-infinite"),
    pytest.param(compare("--timing-threshold", "nan"), "argument --timing-threshold: nan is not a fraction",
                 id="timing-threshold-nan"),
    pytest.param(compare("--quality-threshold", "0"), "argument --quality-threshold: 0 is not a fraction above 0",
                 id="quality-threshold-zero"),
    pytest.param(compare("--quality-threshold", "1e400"), "argument --quality-threshold: 1e400 is not a fraction",
                 id="quality-threshold-huge"),
    # choices and missing arguments
    pytest.param(compare("--ignore-key", "colour"), "argument --ignore-key: invalid choice: 'colour'",
                 id="ignore-key-unknown"),
    pytest.param(history("--metric", "speed"), "argument --metric: invalid choice: 'speed'", id="metric-unknown"),
    pytest.param(lambda tmp: ["compare", str(tmp)], "the following arguments are required: current",
                 id="compare-one-run"),
    pytest.param(lambda tmp: [], "the following arguments are required: COMMAND", id="no-command"),
    pytest.param(lambda tmp: ["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'", id="unknown-command"),
    pytest.param(lambda tmp: ["build"], "the following arguments are required: --model", id="build-without-model"),
    # paths: --plot
    pytest.param(history("--plot", "TMP/nonexistent/dir/h.html"),
                 "--plot {tmp}/nonexistent/dir/h.html: the folder {tmp}/nonexistent/dir does not exist; pass a file "
                 "in an existing, writable folder, or --no-plot", id="plot-folder-missing"),
    pytest.param(history("--plot", "/nonexistent/dir/h.html"), "the folder /nonexistent/dir does not exist",
                 id="plot-folder-missing-absolute"),
    pytest.param(history("--plot", "TMP/reports/base/results.json/h.html"), "/results.json is not a folder",
                 id="plot-under-a-file"),
    pytest.param(history("--plot", "TMP/reports"), "--plot {tmp}/reports: is a folder; name a file in it",
                 id="plot-a-folder"),
    pytest.param(history("--plot", "TMP/" + "x" * 300 + "/h.html"), "--plot", id="plot-name-too-long"),
    # paths: the folder of runs
    pytest.param(lambda tmp: ["history", str(tmp / "missing")], "is not a folder; pass the reports folder",
                 id="history-folder-missing"),
    pytest.param(lambda tmp: ["history", str(file(tmp, "f", b"x"))], "is not a folder; pass the reports folder",
                 id="history-folder-a-file"),
    pytest.param(lambda tmp: ["history", str(tmp)], "holds no run with a results.json", id="history-no-run"),
    pytest.param(lambda tmp: ["compare", str(tmp / "missing"), str(tmp / "missing")], "no such file or folder",
                 id="compare-missing"),
    # paths: --pyproject
    pytest.param(lambda tmp: ["gates", "--pyproject", str(tmp / "nope.toml")],
                 "--pyproject {tmp}/nope.toml: no such file", id="pyproject-missing"),
    pytest.param(lambda tmp: ["gates", "--pyproject", str(tmp)], "--pyproject {tmp}: no such file",
                 id="pyproject-a-folder"),
    pytest.param(pyproject(b"[tool.harness\n"), "is not a readable TOML file (", id="pyproject-not-toml"),
    pytest.param(pyproject(b"\xff\xfe[tool]\n"), "is not a readable TOML file ('utf-8' codec can't decode",
                 id="pyproject-not-utf-8"),
    pytest.param(pyproject(b"tool = 3\n"), "[tool] is not a table", id="pyproject-tool-a-number"),
    pytest.param(pyproject(b"[tool]\npytest = 'x'\n"), "[tool.pytest] is not a table", id="pyproject-pytest-a-string"),
    pytest.param(pyproject(b"[tool.pytest]\nini_options = [1]\n"), "[tool.pytest.ini_options] is not a table",
                 id="pyproject-ini-options-a-list"),
    pytest.param(pyproject(b"[tool]\nharness = 1\n"), "[tool.harness] and [tool.harness.gates] must be tables",
                 id="pyproject-harness-a-number"),
    pytest.param(pyproject(b"[tool.harness.gates]\nregression_timing_max = 'fast'\n"),
                 "gate regression_timing_max = 'fast'", id="pyproject-gate-not-a-number"),
    # paths: --out (checked before anything is built)
    pytest.param(lambda tmp: ["build", "--model", str(tmp / "m"), "--out", str(file(tmp, "f", b"x"))],
                 "--out {tmp}/f: is not a folder", id="out-a-file"),
    pytest.param(lambda tmp: ["build", "--model", str(tmp / "m"), "--out", str(file(tmp, "f", b"x") / "sub")],
                 "--out {tmp}/f/sub: {tmp}/f is not a folder", id="out-under-a-file"),
]


def expected(fragment: str, tmp: Path) -> str:
    """``fragment`` as this OS prints it: the rows write paths with "/" (and "{tmp}"), the harness prints them as
    ``Path`` does, with ``os.sep`` (Windows: "\\"). No row's fragment holds a "/" that is not in a path."""
    return fragment.format(tmp=tmp).replace("/", os.sep)


def harness(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``harness ARGV`` in this process: its exit code (argparse's too), stdout, stderr."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("make", "fragment"), ROWS)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, make: Make, fragment: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = make(tmp_path)
    code, out, err = harness(argv, capsys)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("harness") and expected(fragment, tmp_path) in lines[0], lines[0]
    assert code == cli.EXIT_USAGE
    assert out == ""


@pytest.mark.parametrize(
    "options",
    [pytest.param(["--last", "1"], id="last-1"), pytest.param(["--last", "99"], id="last-more-than-there-are"),
     pytest.param(["--plot", "TMP/out.html"], id="plot-in-an-existing-folder"),
     pytest.param(["--plot", "TMP/nonexistent/h.html", "--no-plot"], id="plot-ignored-with-no-plot")],
)
def test_good_history_arguments_pass(tmp_path: Path, options: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = harness(history(*options)(tmp_path), capsys)
    assert code == cli.EXIT_OK and err == ""
    rows = [line for line in out.splitlines() if line.startswith(("base ", "current "))]
    assert len(rows) == (1 if options[:2] == ["--last", "1"] else 2)
    if "--plot" in options and "--no-plot" not in options:
        assert (tmp_path / "out.html").is_file()


def test_good_compare_arguments_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = harness(compare("--busy-limit", "0", "--timing-threshold", "0.2", "--quality-threshold",
                                     "9.5", "--ignore-key", "machine", "--format", "json")(tmp_path), capsys)
    assert code == cli.EXIT_OK and err == ""
    assert json.loads(out)["verdict"] in ("within", "inconclusive")


def test_a_plot_that_cannot_be_written_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A folder that exists but refuses the file (read-only, full): the write itself fails (root ignores modes, so
    the refusal is simulated)."""
    argv = history()(tmp_path)

    def refuse(path: Path, text: str) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cli, "write_text_atomic", refuse)
    code, out, err = harness(argv, capsys)
    assert code == cli.EXIT_USAGE and "Traceback" not in err and out == ""
    assert err.splitlines() == [f"harness: cannot draw the trends into {tmp_path / 'reports' / 'history.html'} "
                                "(Permission denied); pass --plot FILE in a writable folder, or --no-plot"]


def test_a_plot_folder_that_is_not_writable_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    argv = history("--plot", "TMP/h.html")(tmp_path)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    code, _, err = harness(argv, capsys)
    assert code == cli.EXIT_USAGE
    assert err.splitlines() == [f"harness: --plot {tmp_path / 'h.html'}: the folder {tmp_path} is not writable; "
                                "pass a file in an existing, writable folder, or --no-plot"]
