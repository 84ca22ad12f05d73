"""The one way to plug in a runtime: a factory, used in the pytest process and in the worker process alike.

A conftest (or plugin) implements ``pytest_harness_runtime_factory(config)`` and returns a callable
``factory(path, ep) -> Runtime`` defined at module level. Every suite loads its models with it, and the
robustness suites' worker process (``harness.worker``) imports the same factory by reference, so a runtime a
user plugs in is the one the malformed-input and fuzz suites drive too.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.runtime.protocol import Runtime

RuntimeFactory = Callable[[Path, str], "Runtime"]
HOOK = "pytest_harness_runtime_factory"


def _resolve(namespace: Any, qualname: str) -> Any:
    parts = qualname.split(".")
    target = namespace.get(parts[0]) if isinstance(namespace, dict) else getattr(namespace, parts[0], None)
    for part in parts[1:]:
        target = getattr(target, part, None)
    return target


def _defining_module(factory: RuntimeFactory) -> tuple[str, str | None, Any] | None:
    """The name, file and namespace of the module that defines ``factory``. A function knows its module's
    globals; ``sys.modules`` by name would be ambiguous for conftests, which pytest may import under one name."""
    namespace = getattr(factory, "__globals__", None)
    if isinstance(namespace, dict):
        return str(namespace.get("__name__", "")), namespace.get("__file__"), namespace
    module = sys.modules.get(getattr(factory, "__module__", None) or "")
    return None if module is None else (module.__name__, getattr(module, "__file__", None), module)


def reference_of(factory: RuntimeFactory) -> str:
    """``module:name`` (``@file`` for a conftest): what the worker process imports the factory by; ConfigError if
    it cannot."""
    defining = _defining_module(factory)
    qualname = getattr(factory, "__qualname__", "")
    if defining is None or "<" in qualname or _resolve(defining[2], qualname) is not factory:
        raise ConfigError(f"the runtime factory {factory!r} from {HOOK} must be a function or class defined "
                          "at module level (the worker process imports it by name); define it at the top level of "
                          "your conftest or module and return it")
    name, file, _ = defining
    return f"{name}:{qualname}" + (f"@{file}" if file and _is_conftest(name) else "")


def _is_conftest(module_name: str) -> bool:
    return "conftest" in module_name.split(".")


def load(reference: str) -> RuntimeFactory:
    """The factory a reference names: a module imported by name, or a conftest loaded from its file (pytest
    imports conftests under names no other process can import)."""
    target, _, file = reference.partition("@")
    module_name, _, qualname = target.partition(":")
    if not module_name or not qualname:
        raise ConfigError(f"worker runtime {reference!r} must be module:factory, e.g. "
                          "harness.runtime.genai:RawGenAIRuntime")
    if file and _is_conftest(module_name):
        spec = importlib.util.spec_from_file_location(f"_harness_factory_{abs(hash(file))}", file)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot load the runtime factory's module from {file}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    factory = _resolve(module, qualname)
    if not callable(factory):
        raise ConfigError(f"runtime factory {reference!r} names nothing callable")
    return factory  # type: ignore[no-any-return]
