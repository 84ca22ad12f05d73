"""Hooks a conftest or another plugin can implement to swap the builder or the runtime."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from harness.build.builders import Builder
    from harness.build.pipeline import PreparedModel
    from harness.runtime import Runtime


@pytest.hookspec(firstresult=True)
def pytest_harness_builder(config: pytest.Config, name: str, workflow: Path | None) -> Builder | None:
    """Return the builder called ``name`` (olive or model-builder), or None for the built-in one."""


@pytest.hookspec(firstresult=True)
def pytest_harness_runtime(config: pytest.Config, model: PreparedModel) -> Runtime | None:
    """Return a loaded runtime for ``model``, or None for onnxruntime-genai. Also called for the model's
    fp32-compute twin, whose ``model.twin_of`` names the model it is the twin of."""
