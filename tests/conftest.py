"""Shared by the project's own tests.

pytester's in-process runs drop the modules they imported when they end; a native extension module
cannot be imported again in the same process (onnx's aborts: "nanobind: refusing to add duplicate
key"). Imported once here, before any inner run, it stays.
"""

from pathlib import Path

import onnx  # noqa: F401
import pytest

E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e is the slow tier (the real model): ``-m "not e2e"`` runs the fast one."""
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)
