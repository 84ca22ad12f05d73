"""The folders a run writes into: refused at start in one line when they cannot be written; a report folder per
session even when several start in one second, and never an endless search for a free name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import folders
from harness.errors import ConfigError
from harness.folders import claim_new_dir, writable_dir
from harness.testing.links import dangling_symlink


def test_a_missing_folder_is_created(tmp_path: Path) -> None:
    assert writable_dir(tmp_path / "a" / "b", "--harness-reports").is_dir()


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.write_text("", encoding="utf-8"), "is a file, not a folder"),
    (dangling_symlink, "is a symlink to .*gone, which does not exist"),
    (lambda p: (p.parent / "file").write_text("", encoding="utf-8") or None, "cannot be written"),
], ids=["a-file", "a-dangling-symlink", "under-a-file"])
def test_a_folder_that_cannot_be_written_is_one_line(tmp_path: Path, make, message: str) -> None:
    target = tmp_path / "reports"
    make(target)
    where = tmp_path / "file" / "reports" if message == "cannot be written" else target
    with pytest.raises(ConfigError, match=rf"--harness-reports {re.escape(str(where))}.* {message}"):
        writable_dir(where, "--harness-reports")


def test_sessions_of_one_second_get_their_own_folders(tmp_path: Path) -> None:
    planned = tmp_path / "20261206-120000-model-int4"
    assert [claim_new_dir(planned).name for _ in range(3)] == [
        planned.name, f"{planned.name}-2", f"{planned.name}-3"]


def test_a_name_taken_by_a_link_or_file_stops_instead_of_looping(tmp_path: Path) -> None:
    planned = tmp_path / "run"
    dangling_symlink(planned)
    with pytest.raises(ConfigError, match="a file or link of that name is in the way"):
        claim_new_dir(planned)


def test_the_search_for_a_free_name_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folders, "MOST_RUN_DIR_ATTEMPTS", 3)
    planned = tmp_path / "run"
    for _ in range(3):
        claim_new_dir(planned)
    with pytest.raises(ConfigError, match="3 report folders named run already exist"):
        claim_new_dir(planned)
