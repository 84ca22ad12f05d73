"""The folders a run writes into (the cache, the reports), checked at session start.

A folder that cannot be written is found before a build or a run is spent, and said in one line: a file where a
folder is meant, a dangling symlink, a read-only or full disk.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from harness.errors import ConfigError

MOST_RUN_DIR_ATTEMPTS = 1000  # sessions started in the same second that one reports folder can take


def writable_dir(path: Path, flag: str) -> Path:
    """``path`` as a folder this process can write into, created if missing; a ConfigError naming ``flag``
    otherwise."""
    where = f"{flag} {path}"
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"{where} is a symlink to {os.readlink(path)}, which does not exist; create its target "
                          "or point the setting at a folder")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{where} is a file, not a folder; point the setting at a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"{where} cannot be written ({exc.strerror or exc}); point the setting at a folder "
                          "you can write to") from None
    return path


def claim_new_dir(planned: Path) -> Path:
    """Create ``planned``, or ``planned-2``, ``-3``... when another session (or xdist worker) took the name first."""
    for attempt in range(1, MOST_RUN_DIR_ATTEMPTS + 1):
        candidate = planned if attempt == 1 else planned.with_name(f"{planned.name}-{attempt}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            if not candidate.is_dir():  # a file or dangling symlink under the name: not another session's folder
                raise ConfigError(f"cannot create the report folder {candidate}: a file or link of that name is "
                                  "in the way; remove it") from None
        except OSError as exc:
            raise ConfigError(f"cannot create the report folder {candidate} ({exc.strerror or exc}); point "
                              "--harness-reports at a folder you can write to") from None
    raise ConfigError(f"{MOST_RUN_DIR_ATTEMPTS} report folders named {planned.name} already exist; clear "
                      f"{planned.parent} or point --harness-reports elsewhere")
