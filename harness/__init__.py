"""pytest plugin that builds, quantizes and validates small language models shipped as ONNX.

The types a suite of your own needs are importable from here (``from harness import Case, Gates, Runtime``);
they load on first use, so importing the package stays cheap for every pytest run that does not engage it.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports below only name the lazy re-exports for type checkers)
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module it is defined in: the public API for writing suites and hooks (README, "Writing your own suite").
# The shipped suites import nothing else (tests/plugin/test_public_api.py).
_PUBLIC = {
    # errors: each is one line that names the problem and the fix
    **{name: "harness.errors" for name in ("ConfigError", "ContextOverflow", "EmptyInput", "HarnessError",
                                           "InvalidSearchOption", "RuntimeFailure")},
    # settings, gates and profiles
    "Settings": "harness.config.settings",
    **{name: "harness.config.gates" for name in ("Gate", "Gates")},
    "Profile": "harness.config.profiles",
    # the runtime a suite drives
    **{name: "harness.runtime.protocol" for name in ("Generation", "LogitsRuntime", "Message", "ModelInfo", "Prompt",
                                                     "RawRuntime", "rendered_prompt", "ReusingRuntime", "Runtime",
                                                     "SearchOptions")},
    "read_chat_template": "harness.runtime.genai",
    # the model under test and its deployment
    "Builder": "harness.preparation.builders",
    "PreparedModel": "harness.preparation.pipeline",
    "MemoryPlan": "harness.capacity.plan",
    **{name: "harness.deploy.folder" for name in ("Deployment", "schema_errors")},
    **{name: "harness.deploy.templates" for name in ("control_tokens", "end_of_turn_token", "ENTRIES", "entry_mismatch",
                                                     "injection_verdict", "PLACEHOLDER", "PromptTemplate",
                                                     "special_tokens")},
    **{name: "harness.deploy.foundry" for name in ("foundry_chats", "FoundryAnswer", "FoundryLocalSession",
                                                   "FoundryUnavailable", "registered_model_ids", "reserved_kv_cache")},
    # fixtures' types and the plugin's words
    **{name: "harness.fixtures" for name in ("ModelLoader", "PathsFactory", "RecordAnswer", "ReportFinding", "Settle")},
    "NO_CHAT_TEMPLATE": "harness.plugin",
    # verdicts: compute paths, timings
    **{name: "harness.checks.stability" for name in ("ComputePaths", "PathJudgement", "PathVerdict")},
    **{name: "harness.checks.ab" for name in ("AB_MIN_PAIRS", "ABModels", "InconclusiveVerdict", "judge_pairs", "Pair",
                                              "pair_orders", "PairedVerdict")},
    "Yardstick": "harness.checks.yardstick",
    # the checks behind the shipped suites, one step each
    **{name: "harness.checks.cases" for name in ("Case", "CaseSet")},
    "AnswerContext": "harness.checks.assertions",
    **{name: "harness.checks.output_format" for name in ("answer_context", "format_problems", "token_problems")},
    **{name: "harness.checks.case_verdicts" for name in ("case_verdict", "format_verdict", "quality_verdict",
                                                         "repeat_failure")},
    **{name: "harness.checks.latency" for name in ("benchmark_prompt", "measure_latency")},
    **{name: "harness.checks.precisions" for name in ("measure_precision", "report_precisions")},
    **{name: "harness.checks.parity" for name in ("parity_failure", "ParityReport", "ReferenceData")},
    **{name: "harness.checks.retention" for name in ("case_retention_verdict", "report_retentions", "text_retention")},
    "LENGTH_IDS": "harness.length_plan",
    **{name: "harness.checks.lengths" for name in ("LengthSweep", "memory_model", "memory_verdict", "prefill_verdict",
                                                   "tpot_verdict")},
    **{name: "harness.checks.memory" for name in ("MemorySampler", "open_reused_generator", "ReuseUnsupported",
                                                  "WARMUP_CYCLES", "WARMUP_GENERATIONS")},
    "foundry_verdict": "harness.checks.foundry",
    # robustness: malformed input and fuzzing
    **{name: "harness.robustness.catalog" for name in ("INPUT_CASES", "ProbeCase", "SETTING_CASES")},
    "Prober": "harness.robustness.prober",
    **{name: "harness.robustness.fuzzing" for name in ("fuzz", "prompt_requests", "setting_requests")},
}
__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:
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
    from harness.checks.assertions import AnswerContext
    from harness.checks.case_verdicts import case_verdict, format_verdict, quality_verdict, repeat_failure
    from harness.checks.cases import Case, CaseSet
    from harness.checks.foundry import foundry_verdict
    from harness.checks.latency import benchmark_prompt, measure_latency
    from harness.checks.lengths import LengthSweep, memory_model, memory_verdict, prefill_verdict, tpot_verdict
    from harness.checks.memory import (
        WARMUP_CYCLES,
        WARMUP_GENERATIONS,
        MemorySampler,
        ReuseUnsupported,
        open_reused_generator,
    )
    from harness.checks.output_format import answer_context, format_problems, token_problems
    from harness.checks.parity import ParityReport, ReferenceData, parity_failure
    from harness.checks.precisions import measure_precision, report_precisions
    from harness.checks.retention import case_retention_verdict, report_retentions, text_retention
    from harness.checks.stability import ComputePaths, PathJudgement, PathVerdict
    from harness.checks.yardstick import Yardstick
    from harness.config.gates import Gate, Gates
    from harness.config.profiles import Profile
    from harness.config.settings import Settings
    from harness.deploy.folder import Deployment, schema_errors
    from harness.deploy.foundry import (
        FoundryAnswer,
        FoundryLocalSession,
        FoundryUnavailable,
        foundry_chats,
        registered_model_ids,
        reserved_kv_cache,
    )
    from harness.deploy.templates import (
        ENTRIES,
        PLACEHOLDER,
        PromptTemplate,
        control_tokens,
        end_of_turn_token,
        entry_mismatch,
        injection_verdict,
        special_tokens,
    )
    from harness.errors import (
        ConfigError,
        ContextOverflow,
        EmptyInput,
        HarnessError,
        InvalidSearchOption,
        RuntimeFailure,
    )
    from harness.fixtures import ModelLoader, PathsFactory, RecordAnswer, ReportFinding, Settle
    from harness.length_plan import LENGTH_IDS
    from harness.plugin import NO_CHAT_TEMPLATE
    from harness.preparation.builders import Builder
    from harness.preparation.pipeline import PreparedModel
    from harness.robustness.catalog import INPUT_CASES, SETTING_CASES, ProbeCase
    from harness.robustness.fuzzing import fuzz, prompt_requests, setting_requests
    from harness.robustness.prober import Prober
    from harness.runtime.genai import read_chat_template
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


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
