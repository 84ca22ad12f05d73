"""File operations shared by the cache, the derived variants, the deployment folder and the run's reports."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from pathlib import Path

# Why os.link can fail where a copy works: another file system or volume (EXDEV), one without hard links, too many
# links to one file, or no right to link it. POSIX: EXDEV, EMLINK; EPERM (vfat, or Linux's protected_hardlinks);
# ENOTSUP or EOPNOTSUPP (distinct on macOS); ENOSYS (a FUSE file system without link). Windows maps CreateHardLink's
# error to errno (CPython's PC/errmap.h): ERROR_NOT_SAME_DEVICE -> EXDEV, ERROR_ACCESS_DENIED -> EACCES, and
# ERROR_INVALID_FUNCTION (FAT, exFAT), ERROR_NOT_SUPPORTED (SMB shares), ERROR_TOO_MANY_LINKS and
# ERROR_PRIVILEGE_NOT_HELD all -> EINVAL, errmap's default.
_NO_LINK = frozenset({errno.EXDEV, errno.EMLINK, errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP,
                      errno.ENOSYS, errno.EINVAL})


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
