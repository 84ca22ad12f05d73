"""A content-addressed store of built artefacts: atomic publication, one builder per key.

An entry is a folder ``<root>/<namespace>/<key>/`` that appears only once it is complete: the
build writes into a private temporary folder which is renamed into place at the end, so a killed
build leaves a temporary folder that no later run trusts (it is removed by the next build of that
key). A file lock per key makes concurrent pytest processes or xdist workers build it once.

A build may instead run in place (``in_place``): in its final folder, which counts as an entry only once its manifest
is written last. That is for what cannot move (a virtual environment records its own path) or must keep its path short
(Windows' 260-character limit).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from harness.capacity.memory import format_size
from harness.errors import BuildError
from harness.fsutil import write_text_atomic

MANIFEST = ".harness-entry.json"


@dataclass(frozen=True)
class CacheResult:
    path: Path
    hit: bool
    seconds: float  # time spent building (0 for a hit), excluding waiting for another builder


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def entry(self, namespace: str, key: str) -> Path:
        return self.root / namespace / key

    def lookup(self, namespace: str, key: str) -> Path | None:
        path = self.entry(namespace, key)
        return path if (path / MANIFEST).is_file() else None

    def _hit(self, namespace: str, key: str) -> CacheResult | None:
        found = self.lookup(namespace, key)
        return None if found is None else CacheResult(found, hit=True, seconds=0.0)

    def get_or_build(self, namespace: str, key: str, build: Callable[[Path], None],
                     metadata: Mapping[str, object], space_needed: int = 0, in_place: bool = False) -> CacheResult:
        """Return the entry for ``key``, calling ``build(tmp_folder)`` first if it is missing.

        ``space_needed`` (bytes) is about what the build writes: a disk with less free space stops the session
        before the build starts rather than with a half-written entry minutes later. ``in_place``: ``build`` gets
        the entry's own folder instead of a temporary one (see the module's docstring).
        """
        hit = self._hit(namespace, key)
        if hit is not None:
            return hit
        self.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        if free < space_needed:
            raise BuildError(f"{format_size(free)} free at {self.root}, and this build writes about "
                             f"{format_size(space_needed)}: {_MAKE_ROOM}")
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with FileLock(str(locks / f"{namespace}-{key}.lock")):
            hit = self._hit(namespace, key)  # another process may have built it meanwhile
            if hit is not None:
                return hit
            return self._build_locked(namespace, key, build, metadata, in_place)

    def _build_folder(self, namespace: str, key: str, in_place: bool) -> Path:
        """An empty folder to build in, after removing what a killed build left (the caller holds the lock)."""
        final = self.entry(namespace, key)
        if final.exists():  # an incomplete leftover without manifest
            shutil.rmtree(final)
        if in_place:
            final.mkdir(parents=True)
            return final
        staging = self.root / "tmp"
        staging.mkdir(parents=True, exist_ok=True)
        for stale in staging.glob(f"{namespace}-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = staging / f"{namespace}-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        return tmp

    def _build_locked(self, namespace: str, key: str, build: Callable[[Path], None],
                      metadata: Mapping[str, object], in_place: bool) -> CacheResult:
        tmp = self._build_folder(namespace, key, in_place)
        final = self.entry(namespace, key)
        started = time.perf_counter()
        try:
            build(tmp)
            seconds = time.perf_counter() - started
            manifest = {**metadata, "key": key, "build_seconds": round(seconds, 2),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            write_text_atomic(tmp / MANIFEST, json.dumps(manifest, indent=2, default=str))  # last: it publishes
            if not in_place:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno != errno.ENOSPC:
                raise
            raise BuildError(f"the disk filled up while building {namespace}/{key[:12]} in {self.root}: "
                             f"{_MAKE_ROOM}") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return CacheResult(final, hit=False, seconds=seconds)


_MAKE_ROOM = "free disk space there, or point --harness-cache-dir (HARNESS_CACHE_DIR) to a larger disk"
