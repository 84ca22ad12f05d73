"""Every text file and pipe the project opens names its encoding: on Windows the default is the ANSI code page
(cp1252), so a report or a case file with non-ASCII text written here would read back garbled there."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.testing.encodings import unencoded_calls

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*sorted(path for folder in ("harness", "suites", "tests", "benchmarks", "examples")
                   for path in (ROOT / folder).rglob("*.py")), ROOT / "conftest.py"]


def test_no_text_io_leaves_the_encoding_to_the_platform() -> None:
    found = [str(call) for path in SOURCES for call in unencoded_calls(path)]
    assert found == []


@pytest.mark.parametrize(("code", "calls"), [
    ("p.read_text()", ["read_text"]),
    ("p.write_text('é')", ["write_text"]),
    ("open(p, 'w')", ["open"]),
    ("p.open()", ["open"]),
    ("subprocess.run(['x'], text=True)", ["subprocess.run(text=True)"]),
    ("p.read_text(encoding='utf-8'); p.write_text('x', 'utf-8'); open(p, 'rb'); os.open(p, 0)", []),
    ("subprocess.run(['x'], capture_output=True); p.read_bytes()", []),
])
def test_the_finder_sees_each_kind_of_call(tmp_path: Path, code: str, calls: list[str]) -> None:
    source = tmp_path / "sample.py"
    source.write_text(code + "\n", encoding="utf-8")
    assert [call.call for call in unencoded_calls(source)] == calls
