"""File operations shared by the cache, the derived variants and the deployment folder."""

from __future__ import annotations

import errno
import os
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
