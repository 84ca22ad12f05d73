"""The packages only conversion and the fp32 reference import (the ``convert`` extra), and one line where they are
missing.

torch has no wheel for Windows on Arm (win_arm64), so there the harness installs without the extra and runs the
suites on an onnxruntime-genai folder built elsewhere. A step that needs a missing package says so in one line before
it starts, instead of failing in a child process on ``No module named 'torch'``. Packages are looked up
(``importlib.util.find_spec``), never imported: torch stays out of the pytest process, whose memory the suites
measure.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from harness.errors import ConfigError, one_line
from harness.preparation.sources import ModelSource, SourceKind

EXTRA = "convert"
INSTALL = f"pip install 'onnx-slm-harness[{EXTRA}]' where torch ships"
PREBUILT = "or give --model an onnxruntime-genai folder built elsewhere (harness build)"
REFERENCE_ELSEWHERE = "or run the parity and retention suites on a machine that has it"

# The modules each step imports (import names; ``DISTRIBUTIONS`` maps them to what pip installs).
GGUF_MODULES = ("torch", "transformers", "gguf")  # harness.preparation.convert
MERGE_MODULES = ("torch", "transformers", "peft")  # harness.preparation.merge (peft needs accelerate)
MODEL_BUILDER_MODULES = ("torch", "transformers", "onnx_ir")  # python -m onnxruntime_genai.models.builder
REFERENCE_MODULES = ("torch", "transformers")  # harness.checks.reference
DISTRIBUTIONS = {"onnx_ir": "onnx-ir"}
# Builders that run in the harness's own environment, by name: Olive runs in an environment of its own.
BUILDERS_IN_HARNESS_ENV = {"model-builder": MODEL_BUILDER_MODULES}
# (platform.system(), platform.machine()) -> why a package of the extra cannot be there.
NO_WHEEL = {("Windows", "ARM64"): "win_arm64 has no torch wheel"}


class MissingPackages(ConfigError):
    """A step needs a package of the ``convert`` extra that is not installed here."""


def missing(modules: Iterable[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported here (looked up, not imported)."""
    return [name for name in modules if not _installed(name)]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None  # None too for sys.modules[module] = None
    except (ImportError, ValueError):  # a module in sys.modules without a spec
        return False


def _platform_note(absent: list[str]) -> str:
    why = NO_WHEEL.get((platform.system(), platform.machine()))
    return f" on this platform ({why})" if why and "torch" in absent else ""


def _listed(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def missing_reason(doing: str, modules: Iterable[str], instead: str = PREBUILT) -> str | None:
    """One line saying that ``doing`` needs packages that are not installed, and the two ways out; None when they
    are all there."""
    absent = missing(modules)
    if not absent:
        return None
    names = _listed([DISTRIBUTIONS.get(name, name) for name in absent])
    verb = "is" if len(absent) == 1 else "are"
    return f"{doing} needs {names}, which {verb} not installed{_platform_note(absent)}: {INSTALL}, {instead}"


def require(doing: str, modules: Iterable[str], instead: str = PREBUILT) -> None:
    """Raise MissingPackages (one line) unless every module of ``modules`` can be imported here."""
    reason = missing_reason(doing, modules, instead)
    if reason is not None:
        raise MissingPackages(reason)


def _label(source: ModelSource) -> str:
    return "the default model" if source.is_default else f"--model {source.path}"


def build_steps(source: ModelSource, builder: str) -> list[tuple[str, tuple[str, ...]]]:
    """What building ``source`` with ``builder`` does in the harness's own environment, in order, with the modules
    each imports."""
    steps: list[tuple[str, tuple[str, ...]]] = []
    if source.weights.kind is SourceKind.GGUF:
        weights = _label(source) if source.weights is source else f"the base model {source.weights.path}"
        steps.append((f"converting {weights} (a GGUF) to a Hugging Face folder", GGUF_MODULES))
    if source.kind is SourceKind.ADAPTER:
        steps.append((f"merging the adapter {_label(source)} into its base model", MERGE_MODULES))
    modules = BUILDERS_IN_HARNESS_ENV.get(builder)
    if modules is not None:
        steps.append((f"building {_label(source)} with the onnxruntime-genai model builder", modules))
    return steps


def require_build_packages(source: ModelSource, builder: str, cached: bool) -> None:
    """At session start: one line naming the first build step whose packages are missing, unless the model is
    pre-built or its build is cached (``cached``)."""
    if cached or not source.kind.needs_build:
        return
    for doing, modules in build_steps(source, builder):
        require(doing, modules)


def child_main(argv: Sequence[str], usage: str, step: Callable[..., object], paths: int) -> int:
    """The main of a child process that needs the `convert` extra, run with ``paths`` folder or file arguments:
    exit 2 with ``usage`` on a wrong count, 1 with one line where the extra's packages are missing, else 0."""
    if len(argv) != paths:
        print(f"usage: {usage}", file=sys.stderr)
        return 2
    try:
        step(*map(Path, argv))
    except MissingPackages as exc:
        print(one_line(exc), file=sys.stderr)
        return 1
    return 0
