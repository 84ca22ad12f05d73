"""pytest plugin that builds, quantizes and validates small language models shipped as ONNX.

The types a suite of your own needs are importable from here (``from harness import Case, Gates, Runtime``);
they load on first use, so importing the package stays cheap for every pytest run that does not engage it.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports below only name the lazy re-exports for type checkers)
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module it is defined in: the public API for writing suites and hooks (README, "Writing your own suite")
_PUBLIC = {
    "HarnessError": "harness.errors", "ConfigError": "harness.errors", "RuntimeFailure": "harness.errors",
    "ContextOverflow": "harness.errors", "EmptyInput": "harness.errors", "InvalidSearchOption": "harness.errors",
    "HarnessConfig": "harness.settings",
    "Gate": "harness.gates", "Gates": "harness.gates",
    "Profile": "harness.profiles",
    **{name: "harness.runtime.protocol" for name in ("Runtime", "LogitsRuntime", "ReusingRuntime", "RawRuntime",
                                                     "Generation", "SearchOptions", "ModelInfo", "Prompt", "Message",
                                                     "rendered_prompt")},
    "Builder": "harness.build.builders", "PreparedModel": "harness.build.pipeline",
    "Deployment": "harness.deploy.folder",
    "MemoryPlan": "harness.capacity.plan",
    "Case": "harness.checks.cases", "CaseSet": "harness.checks.cases",
    **{name: "harness.checks.ab" for name in ("ABModels", "Pair", "PairedVerdict", "InconclusiveVerdict",
                                              "judge_pairs", "pair_orders", "AB_MIN_PAIRS")},
    "Yardstick": "harness.checks.yardstick",
    "ComputePaths": "harness.checks.stability", "PathJudgement": "harness.checks.stability",
    "PathVerdict": "harness.checks.stability",
    **{name: "harness.plugin" for name in ("Settle", "ReportFinding", "RecordAnswer", "PathsFactory", "ModelLoader")},
}
__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:
    from harness.build.builders import Builder
    from harness.build.pipeline import PreparedModel
    from harness.capacity.plan import MemoryPlan
    from harness.checks.ab import (
        AB_MIN_PAIRS,
        ABModels,
        InconclusiveVerdict,
        Pair,
        PairedVerdict,
        judge_pairs,
        pair_orders,
    )
    from harness.checks.cases import Case, CaseSet
    from harness.checks.stability import ComputePaths, PathJudgement, PathVerdict
    from harness.checks.yardstick import Yardstick
    from harness.deploy.folder import Deployment
    from harness.errors import (
        ConfigError,
        ContextOverflow,
        EmptyInput,
        HarnessError,
        InvalidSearchOption,
        RuntimeFailure,
    )
    from harness.gates import Gate, Gates
    from harness.plugin import ModelLoader, PathsFactory, RecordAnswer, ReportFinding, Settle
    from harness.profiles import Profile
    from harness.runtime.protocol import (
        Generation,
        LogitsRuntime,
        Message,
        ModelInfo,
        Prompt,
        RawRuntime,
        ReusingRuntime,
        Runtime,
        SearchOptions,
        rendered_prompt,
    )
    from harness.settings import HarnessConfig


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
