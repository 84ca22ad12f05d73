"""Where the shipped suites and fixtures live, in a source checkout and in an installed wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _package_dir(package: str, fallback: str) -> Path:
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        return Path(location)
    return Path(__file__).resolve().parent.parent / fallback


def suites_dir() -> Path:
    return _package_dir("harness.suites", "suites")


def fixtures_dir() -> Path:
    return _package_dir("harness.fixtures", "fixtures")
