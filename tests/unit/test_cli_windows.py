"""The ``harness`` command with Windows' redirected stdout: cp1252, which cannot write the trend's sparkline
(``▁…█``) nor most non-Latin text. Run as a child with ``PYTHONIOENCODING=cp1252`` and stdout in a file, as a CI
step appending to ``$GITHUB_STEP_SUMMARY`` on a Windows runner has it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.unit.test_compare import rounds, write_run


def _history(folder: Path, encoding: str) -> tuple[int, str, str]:
    out = folder / "out.txt"
    env = {**os.environ, "PYTHONIOENCODING": encoding, "COLUMNS": "160"}
    with out.open("wb") as stdout:
        done = subprocess.run([sys.executable, "-m", "harness.cli", "history", str(folder), "--no-plot"],
                              stdout=stdout, stderr=subprocess.PIPE, env=env, check=False)
    return done.returncode, out.read_bytes().decode(encoding), done.stderr.decode("utf-8", "replace")


def _runs(folder: Path) -> None:
    for day, center in enumerate((100, 104, 98, 80), start=20):
        write_run(folder, f"run-{day}-模型", decode=rounds(center, 0.01), started=f"2026-11-{day}T10:00:00+00:00")


def test_history_to_a_cp1252_stdout_exits_0_with_an_ascii_trend(tmp_path: Path) -> None:
    _runs(tmp_path)
    code, out, err = _history(tmp_path, "cp1252")
    assert (code, err) == (0, "")
    trend = next(line for line in out.splitlines() if line.startswith("trend"))
    assert set(trend.split()[-1]) <= set("_.-=*#") and trend.split()[-1][-1] == "_"  # the drop to 80 at the end
    assert "run-20-??" in out  # what cp1252 cannot write is a "?", not an exception


def test_history_to_a_utf8_stdout_keeps_the_sparkline(tmp_path: Path) -> None:
    _runs(tmp_path)
    code, out, _ = _history(tmp_path, "utf-8")
    trend = next(line for line in out.splitlines() if line.startswith("trend"))
    assert code == 0 and trend.split()[-1][-1] == "▁" and "run-20-模型" in out
