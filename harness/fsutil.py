"""File operations shared by the cache, the derived variants, the deployment folder and the run's reports."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from pathlib import Path

# Why os.link can fail where a copy works: another file system (EXDEV; on Windows another volume),
# no hard links there, or too many links to one file.
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES)


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (a 200 MB weights file is then shared), else a copy.

    Never a symlink: onnxruntime rejects symlinked external data and Foundry Local a symlinked model.
    """
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        shutil.copy2(source, target)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (utf-8) to ``path`` whole or not at all.

    The text goes to a temporary file in the same folder, which then replaces ``path`` (``os.replace``, atomic on one
    file system): a reader sees the old file or the new one, never a truncated one. A full disk once left a 0-byte
    results.json that broke every later comparison with its folder. On failure the temporary file is removed and
    ``path`` is untouched. No fsync: this guards against a failed write, not against a power cut.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    file = temporary.open("x", encoding="utf-8")  # "x": never another writer's file; the mode write_text gives
    try:
        with file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
