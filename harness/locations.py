"""Where the shipped suites and fixtures live, in a source checkout and in an installed wheel, and where the cache
goes by default on each operating system."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path

APP_NAME = "onnx-slm-harness"


def _package_dir(package: str, fallback: str) -> Path:
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        return Path(location)
    return Path(__file__).resolve().parent.parent / fallback


def suites_dir() -> Path:
    return _package_dir("harness.suites", "suites")


@functools.cache
def shipped_suites_dir() -> Path:
    """The shipped suites' folder, resolved: a module whose parent it is, is a shipped suite."""
    return suites_dir().resolve()


def data_dir() -> Path:
    """The shipped data: the checkout's ``fixtures/`` folder (case files, evaluation texts, schemas), installed as the
    ``harness.data`` package."""
    return _package_dir("harness.data", "fixtures")


def default_cache_dir() -> Path:
    """The cache's default folder, by the platform's convention, decided at call time (tests simulate each platform).

    Linux and other Unix: ``$XDG_CACHE_HOME`` or ``~/.cache``. macOS: ``~/Library/Caches``, ignoring XDG_CACHE_HOME
    as platformdirs does (XDG is not a macOS convention). Windows: ``%LOCALAPPDATA%`` (else ``~/AppData/Local``),
    without platformdirs' ``Cache`` subfolder: the Olive environment's deepest torch file needs those 6 characters of
    Windows' 260-character path limit (``harness.preparation.olive_env.MAX_ENV_FOLDER``).
    """
    base: str | Path
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / APP_NAME
