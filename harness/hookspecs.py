"""Hooks a conftest or another plugin can implement to swap the builder or the runtime (one factory, used by
every suite and by the worker process: ``harness.runtime_factory``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from harness.build.builders import Builder
    from harness.runtime_factory import RuntimeFactory


@pytest.hookspec(firstresult=True)
def pytest_harness_builder(config: pytest.Config, name: str, workflow: Path | None) -> Builder | None:
    """Return the builder called ``name`` (olive or model-builder), or None for the built-in one."""


@pytest.hookspec(firstresult=True)
def pytest_harness_runtime_factory(config: pytest.Config) -> RuntimeFactory | None:
    """Return ``factory(path, ep) -> Runtime``, defined at module level, or None for onnxruntime-genai.

    The models the suites load go through it (the model under test and its fp32-compute twin), in the pytest
    process and in the robustness suites' worker process, which imports it by name. The precision comparison's
    speed probe measures onnxruntime-genai itself, in a fresh process."""
