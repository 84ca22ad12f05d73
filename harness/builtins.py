"""The harness's own gates, profiles and builders, contributed through the hooks a user's conftest
implements too (``harness.hookspecs``). Registered by the plugin; cheap to import, since the modules
that declare gates load only when a run engages the harness and asks for them."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import pytest

from harness.config.profiles import BUILTIN_PROFILES, Profile

if TYPE_CHECKING:
    from harness.config.gates import Gate
    from harness.config.settings import Settings
    from harness.hookspecs import BuilderFactory
    from harness.preparation.builders import Builder

# The modules whose checks read gates; each declares them in a GATES tuple beside the check.
GATE_MODULES = ("harness.checks.quality", "harness.checks.parity", "harness.checks.retention", "harness.checks.memory",
                "harness.checks.lengths", "harness.robustness.catalog", "harness.checks.bench",
                "harness.report.compare", "harness.deploy.foundry")


def builtin_gates() -> list[Gate]:
    return [gate for name in GATE_MODULES for gate in importlib.import_module(name).GATES]


def _model_builder(settings: Settings) -> Builder:
    from harness.preparation.builders import ModelBuilderBuilder

    return ModelBuilderBuilder()


def _olive(settings: Settings) -> Builder:
    from harness.preparation.builders import OliveBuilder
    from harness.preparation.olive_env import OliveEnvironment

    return OliveBuilder(OliveEnvironment(settings.cache_dir, settings.olive_python), settings.olive_config)


BUILTIN_BUILDERS: Mapping[str, BuilderFactory] = {"olive": _olive, "model-builder": _model_builder}


def make_builder(settings: Settings) -> Builder:
    """A built-in builder by the name the settings give (for scripts that run without pytest)."""
    return BUILTIN_BUILDERS[settings.builder](settings)


@pytest.hookimpl(trylast=True)
def pytest_harness_gates(config: pytest.Config) -> Iterable[Gate]:
    return builtin_gates()


@pytest.hookimpl(trylast=True)
def pytest_harness_profiles(config: pytest.Config) -> Iterable[Profile]:
    return BUILTIN_PROFILES


@pytest.hookimpl(trylast=True)
def pytest_harness_builders(config: pytest.Config) -> Mapping[str, BuilderFactory]:
    return BUILTIN_BUILDERS
