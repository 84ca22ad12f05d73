"""Content hashes of model sources, memoized by file metadata so a warm start rereads nothing."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1 << 20


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HashMemo:
    """sha256 per file, reused while (size, mtime, inode) are unchanged.

    The memo is a small JSON file in the cache folder; a lost or corrupt memo only costs a rehash.
    """

    def __init__(self, memo_path: Path) -> None:
        self.memo_path = memo_path
        try:
            entries = json.loads(memo_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entries = {}
        self._entries: dict[str, list[object]] = entries if isinstance(entries, dict) else {}
        self._dirty = False

    def file_digest(self, path: Path) -> str:
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        key = str(path.resolve())
        entry = self._entries.get(key)
        if isinstance(entry, list) and len(entry) == 4 and entry[:3] == stamp:
            return str(entry[3])
        digest = _file_digest(path)
        self._entries[key] = [*stamp, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        if not self._dirty:
            return
        self.memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.memo_path.with_name(f"{self.memo_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._entries), encoding="utf-8")
        os.replace(tmp, self.memo_path)
        self._dirty = False


def content_hash(root: Path, memo: HashMemo) -> str:
    """One sha256 over every file's relative path and content digest (hidden files skipped)."""
    digest = hashlib.sha256()
    for path in _files(root):
        relative = path.name if root.is_file() else path.relative_to(root).as_posix()
        digest.update(f"{relative}\0{memo.file_digest(path)}\n".encode())
    memo.save()
    return digest.hexdigest()


def combine(parts: Iterable[tuple[str, str]]) -> str:
    """A stable key from named parts (sorted by name, so argument order never matters)."""
    digest = hashlib.sha256()
    for name, value in sorted(parts):
        digest.update(f"{name}={value}\n".encode())
    return digest.hexdigest()
