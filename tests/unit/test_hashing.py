from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.preparation import hashing
from harness.preparation.hashing import HashMemo, combine, content_hash


def test_hash_changes_with_content_and_names(tmp_path: Path) -> None:
    memo = HashMemo(tmp_path / "memo.json")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"1")
    first = content_hash(folder, memo)
    (folder / "a.bin").write_bytes(b"2")
    second = content_hash(folder, memo)
    (folder / "a.bin").rename(folder / "b.bin")
    third = content_hash(folder, memo)
    assert len({first, second, third}) == 3


def test_memo_skips_rereading_unchanged_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" * 1000)
    expected = content_hash(model, HashMemo(tmp_path / "memo.json"))

    def no_reading(path: Path) -> str:
        raise AssertionError(f"reread {path}")

    monkeypatch.setattr(hashing, "_file_digest", no_reading)
    assert content_hash(model, HashMemo(tmp_path / "memo.json")) == expected


def test_combine_ignores_order() -> None:
    assert combine([("a", "1"), ("b", "2")]) == combine([("b", "2"), ("a", "1")])
    assert combine([("a", "1")]) != combine([("a", "2")])


@pytest.mark.parametrize("memo", ["[]", "{not json", '{"FILE": 3}', '{"FILE": [1]}', '{"FILE": "abc"}'])
def test_a_damaged_memo_costs_a_rehash_not_the_run(tmp_path: Path, memo: str) -> None:
    weights = tmp_path / "model" / "weights.bin"
    weights.parent.mkdir()
    weights.write_bytes(b"abc")
    key = json.dumps(str(weights.resolve()))[1:-1]  # a Windows path's backslashes, escaped for JSON
    (tmp_path / "hashes.json").write_text(memo.replace("FILE", key), encoding="utf-8")
    assert content_hash(weights.parent, HashMemo(tmp_path / "hashes.json")) == content_hash(
        weights.parent, HashMemo(tmp_path / "other.json"))
