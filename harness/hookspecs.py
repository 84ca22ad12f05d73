"""Hooks a conftest or another plugin implements to add gates, profiles and builders, or to plug a runtime.

The harness's own gates, profiles and builders come through the same hooks (``harness.builtins``), so a
user's contribution sits beside them: a new name adds one; a profile or builder of a built-in's name
replaces it (a conftest's implementation is called before the built-in one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.config.gates import Gate
    from harness.config.profiles import Profile
    from harness.config.settings import Settings
    from harness.preparation.builders import Builder
    from harness.runtime.factory import RuntimeFactory

BuilderFactory = Callable[["Settings"], "Builder"]


@pytest.hookspec
def pytest_harness_gates(config: pytest.Config) -> Iterable[Gate] | None:
    """Return the gates (named limits with measured defaults) your checks read from ``harness_gates``.

    ``--gate NAME=VALUE`` and ``[tool.harness.gates]`` set them like the built-in ones; a name declared
    twice stops the session in one line."""


@pytest.hookspec
def pytest_harness_profiles(config: pytest.Config) -> Iterable[Profile] | None:
    """Return sample-count profiles that ``--harness-profile NAME`` selects."""


@pytest.hookspec
def pytest_harness_builders(config: pytest.Config) -> Mapping[str, BuilderFactory] | None:
    """Return ``{name: factory(settings) -> Builder}``; ``--builder NAME`` selects one."""


@pytest.hookspec(firstresult=True)
def pytest_harness_runtime_factory(config: pytest.Config) -> RuntimeFactory | None:
    """Return ``factory(path, ep) -> Runtime``, defined at module level, or None for onnxruntime-genai.

    The models the suites load go through it (the model under test and its fp32-compute twin), in the pytest
    process and in the robustness suites' worker process, which imports it by name. The precision comparison's
    speed probe measures onnxruntime-genai itself, in a fresh process."""


@pytest.hookspec
def pytest_harness_results(config: pytest.Config, results: Mapping[str, Any], extra: dict[str, Any]) -> None:
    """Add your fields to this run's results.json: put them in ``extra`` under your plugin's name (JSON values).

    ``results`` is the document about to be written, to read (outcomes, metrics, provenance). ``extra`` becomes its
    ``extra`` field when you add something; a hook that raises, or a value JSON cannot hold, is one line at the end
    of the session, which then fails, and results.json is written without ``extra``."""
