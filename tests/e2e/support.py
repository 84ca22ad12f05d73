"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import os
from pathlib import Path

from harness.builtins import make_builder
from harness.session import HarnessSession
from harness.settings import resolve

ROOT = Path(__file__).resolve().parents[2]


def open_session(reports: Path) -> HarnessSession:
    """A harness session on the default model with the environment's settings (HARNESS_CACHE_DIR)."""
    config = resolve({"reports_dir": str(reports)}, os.environ, None, {}, "", ROOT)
    return HarnessSession.open(config, make_builder(config))
