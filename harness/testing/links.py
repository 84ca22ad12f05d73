"""Symbolic links for tests, where the OS lets this process make them.

Windows makes a symlink only with the SeCreateSymbolicLinkPrivilege (an elevated administrator) or with Developer
Mode on; elsewhere it fails with WinError 1314. A test that needs one skips there, saying why, instead of failing.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def dangling_symlink(path: Path) -> Path:
    """A symlink at ``path`` to ``gone`` beside it, which does not exist; skips the test where no symlink can be
    made."""
    try:
        path.symlink_to(path.parent / "gone")
    except OSError as exc:  # Windows without the privilege: [WinError 1314] A required privilege is not held
        pytest.skip(f"this process cannot make a symlink ({exc}); on Windows, turn on Developer Mode or run "
                    "elevated")
    return path
