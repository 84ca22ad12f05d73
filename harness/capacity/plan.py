"""The memory plan: each phase's peak, predicted from the model's size before anything is spent, against what the
run may use.

Every cost is a straight line in the model's size, fitted to peaks ``benchmarks/scale.py`` measured (the whole
process tree's RSS, polled) on real and seeded random-init models from 135M to 1.5B parameters; the README's
"Scale" section has the table. A phase that must run and cannot fit stops the session before it starts, in one
line: the phase, what it needs, what is available, and the way out. A suite that cannot fit skips with its need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from harness.capacity.memory import Available, format_size
from harness.capacity.model_facts import ModelFacts

# -- the measured costs (bytes) -------------------------------------------------------------------------------
# GGUF -> Hugging Face folder (harness.preparation.convert): python, torch and transformers, the tokenizer and the
# GGUF's metadata, then one shard and one tensor at a time, dequantized to fp32 (the largest tensor twice: its row
# chunks and the whole), with the GGUF's pages mapped. Measured: SmolLM2 908 MiB, Qwen2.5-Coder-0.5B 2169 MiB.
CONVERSION_BASE = 0.75e9
CONVERSION_PER_LARGEST_TENSOR_BYTE = 2.0
# An adapter merged into its base (harness.preparation.merge): python, torch, transformers and peft, and the base's
# weights at their saved dtype once (mapped, and copied as each adapted weight is merged in place; a 256 MB shard at a
# time copied again while it is saved). Measured (benchmarks/scale.py measure MODEL --phases merge: a seeded LoRA, r 16,
# on every linear layer): SmolLM2 fp32 (0.54 GB) 903 MiB, the Qwen2.5-0.5B shape bf16 (0.99 GB) 1427 MiB, the
# Qwen2.5-1.5B shape bf16 (3.09 GB) 3391 MiB; least squares 0.45 GB + 1.01 bytes a stored byte. The line below is above
# each (1038, 1467, 3469 MiB).
MERGE_BASE = 0.55e9
MERGE_PER_WEIGHT_BYTE = 1.0
# The model builder (0.18) holds the whole graph in fp32 (onnx_ir's to_proto) while MatMulNBits quantizes it:
# anonymous memory of base + bytes per parameter (int4, measured: 0.13B 1.1 GiB, 0.63B 3.8 GiB, 1.5B 8.4 GiB, 3.9B
# 19.9 GiB; int8 up to 10.4 GiB at 1.5B); the source's safetensors are
# mapped besides, read once tensor by tensor, and the kernel drops those pages under pressure (the 3.9B build ran in
# a 22 GiB control group at a 22.9 GiB tree peak), so they are not counted.
# fp32 and fp16 builds were not measured: they are given int4's cost (the same fp32 graph, no quantizer).
BUILD_COSTS: Mapping[str, tuple[float, float]] = {"int4": (0.85e9, 5.31), "int8": (0.55e9, 6.98),
                                                  "fp32": (0.85e9, 5.31), "fp16": (0.85e9, 5.31)}
# A built model's weights on disk, per parameter: MatMulNBits int4 or int8 with their scales (an untied model keeps
# its embedding table in fp32 besides), fp32 as is.
BUILT_BYTES_PER_PARAMETER: Mapping[str, float] = {"int4": 0.62, "int8": 1.12, "fp32": 4.0, "fp16": 2.0}
# The reference (transformers in a child process): torch's own, the weights at its precision (mapped from a file of
# that dtype, else converted beside the mapped file), and the logits of the longest eval item (a few copies of
# positions x vocabulary in fp32); the pytest process holds the built model meanwhile.
REFERENCE_BASE = 0.6e9
REFERENCE_LOGIT_COPIES = 4
REFERENCE_LONGEST_ITEM = 400  # tokens: the longest shipped eval item with its greedy answer
# A smoke session's pytest process besides its models: pytest, the harness, onnxruntime, Foundry Local's library once
# a suite loaded it, and what the heap keeps (Qwen2.5-Coder-0.5B's template suite, its model alone, peaks at 1.26 GiB
# at the end of a smoke session, 0.6 GiB in a session of its own).
SESSION_BASE = 0.7e9
# Loading a copy of the built model, its peak while MatMulNBits prepacks the weights: base + bytes per resident byte
# (a process loading it: 241 MiB for the default model, 581 MiB for Qwen2.5-Coder-0.5B, 1.59 GiB at 1.5B, 3.90 GiB at
# 3.9B; the fit is within 35 MB of each).
LOAD_BASE, LOAD_PER_BYTE = 0.1e9, 1.70
# A copy that stays loaded beside it (the fp32-compute twin): what the twin adds to the generation suite, 413 MiB on
# Qwen2.5-Coder-0.5B, 1021 MiB at 1.5B, 1.87 GiB at 3.9B.
COPY_BASE, COPY_PER_BYTE = 0.1e9, 0.93
WORKER_BASE = 0.25e9  # a worker process's own Python and onnxruntime (the robustness worker, the precision probe)


@dataclass(frozen=True)
class SuiteShape:
    """What a shipped suite holds at its peak besides the session's model: copies kept loaded beside it (the twin),
    copies loaded at a time (a worker's, Foundry's, a load cycle's), the processes they run in, its longest prompt
    (its KV cache, and its logits, ``logit_copies`` times) and the KV cache Foundry reserves for a chat; and whether
    those loaded copies can do without the session's model (``alone``: it is released while they run)."""

    held: int = 0
    loaded: int = 0
    processes: int = 0
    prompt_tokens: int = 128
    reserved_tokens: int = 0
    logit_copies: int = 1
    alone: bool = False


# reserved_tokens repeats the suites' own max_length for Foundry's chats (CHAT_LENGTH in test_foundry_local.py,
# FOUNDRY_CHAT_LENGTH in test_memory.py): the plan cannot import the suites.
SUITES: Mapping[str, SuiteShape] = {
    "test_benchmarks.py": SuiteShape(prompt_tokens=512),
    "test_cases.py": SuiteShape(held=1),
    "test_foundry_local.py": SuiteShape(held=1, loaded=1, reserved_tokens=1024, alone=True),
    "test_fuzz.py": SuiteShape(loaded=1, processes=1, alone=True),
    "test_generation.py": SuiteShape(held=1),
    "test_input_length.py": SuiteShape(prompt_tokens=16),  # its longer prompts are planned one by one
    "test_malformed.py": SuiteShape(loaded=1, processes=1, prompt_tokens=512, alone=True),
    "test_memory.py": SuiteShape(loaded=1, reserved_tokens=512, alone=True),
    # its logits() of each eval item, and the log-probabilities taken from them
    "test_parity.py": SuiteShape(prompt_tokens=REFERENCE_LONGEST_ITEM, logit_copies=3),
    "test_precisions.py": SuiteShape(held=1, loaded=1, processes=1),
    "test_retention.py": SuiteShape(prompt_tokens=REFERENCE_LONGEST_ITEM, logit_copies=3),  # parity's, once more
    "test_template.py": SuiteShape(),
}
# The suites that judge greedy answers on the twin too (it loads for their module, and is left out where it cannot
# fit: the suite then judges the model as built alone).
TWIN_SUITES = tuple(name for name, shape in SUITES.items() if shape.held)
LENGTH_SUITE = "test_input_length.py"


def resident_bytes(facts: ModelFacts, model_bytes: int) -> int:
    """The built weights a loaded model keeps resident: its files, less an untied fp32 embedding table, which it reads
    a row a token and the kernel pages in on demand."""
    untied = 0 if facts.tied_embeddings else 4 * facts.vocab_size * facts.hidden_size
    return max(model_bytes - untied, model_bytes // 4)


def copy_bytes(facts: ModelFacts, model_bytes: int) -> int:
    """What one more copy of the model, kept loaded beside it, holds."""
    return int(COPY_BASE + COPY_PER_BYTE * resident_bytes(facts, model_bytes))


def load_bytes(facts: ModelFacts, model_bytes: int) -> int:
    """A copy of the model at its peak while it loads."""
    return int(LOAD_BASE + LOAD_PER_BYTE * resident_bytes(facts, model_bytes))


def prefill_bytes(facts: ModelFacts, tokens: int, logit_copies: int = 1) -> int:
    """What a prompt of ``tokens`` adds while it is prefilled: its KV cache and a row of logits per token."""
    return tokens * (facts.kv_bytes_per_token + logit_copies * facts.logits_bytes_per_token)


# -- needs ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Need:
    """One phase's predicted peak and how it was reckoned."""

    phase: str  # "the int4 build", "the fp32 reference", "test_foundry_local.py"
    bytes: int
    basis: str  # the reckoning, in words
    way_out: str  # what to do when it does not fit
    released: bool = False  # the session's model released while the suite's own copies run
    twin: bool = True  # the suite's fp32-compute twin loaded (for a suite that judges on it)

    @property
    def adjusted(self) -> str:
        """How the session makes it fit, in words ("" as planned)."""
        return ", ".join(part for part, applies in (("the session's model released", self.released),
                                                    ("without the twin", not self.twin)) if applies)


def _billions(count: float) -> str:
    return f"{count / 1e9:.2f} B"


def conversion_need(source: ModelFacts) -> Need:
    need = (CONVERSION_BASE + CONVERSION_PER_LARGEST_TENSOR_BYTE * 4 * source.largest_tensor + source.weight_bytes)
    return Need("the GGUF conversion", int(need),
                f"one fp32 tensor at a time, the largest {format_size(4 * source.largest_tensor)}, with the "
                f"{format_size(source.weight_bytes)} GGUF mapped",
                "convert it where there is more memory (harness build) and pass the folder with --model")


def merge_need(merged: ModelFacts) -> Need:
    """peft merging an adapter into its base; ``merged``: the base as the merge loads it (a GGUF's fp32 conversion)."""
    return Need("the adapter merge", int(MERGE_BASE + MERGE_PER_WEIGHT_BYTE * merged.weight_bytes),
                f"the base's {format_size(merged.weight_bytes)} of weights, loaded and merged",
                "merge it where there is more memory (harness build --model=ADAPTER --base-model=BASE on a larger "
                "machine) and pass the built folder with --model")


def build_need(precision: str, source: ModelFacts) -> Need:
    """The model builder at ``precision`` on a source of ``source.parameters``."""
    base, per_parameter = BUILD_COSTS[precision]
    parameters = source.parameters or 0
    return Need(f"the {precision} build", int(base + per_parameter * parameters),
                f"the model builder holds {per_parameter:.1f} bytes a parameter for {_billions(parameters)} "
                "parameters", "build it where there is more memory (harness build --model=... on a larger machine) "
                "and pass the built folder with --model")


def built_bytes(precision: str, source: ModelFacts) -> int:
    """The built model's weight bytes, predicted before the build."""
    parameters = source.parameters or 0
    per_parameter = BUILT_BYTES_PER_PARAMETER.get(precision, 4.0)
    # An untied model's embedding table is not quantized: it stays fp32, per_parameter's share of it besides.
    quantized = precision in ("int4", "int8")
    untied = 0 if source.tied_embeddings or not quantized else (4.0 - per_parameter) * source.vocab_size * \
        source.hidden_size
    return int(per_parameter * parameters + untied)


def reference_need(reference: ModelFacts, precision: str, facts: ModelFacts, model_bytes: int) -> Need:
    """The reference at ``precision`` (fp32 or bf16) beside the pytest process holding the built model."""
    parameters = reference.parameters or 0
    per_parameter = 4 if precision == "fp32" else 2
    stored = reference.weight_bytes / parameters if parameters else per_parameter
    converted = abs(stored - per_parameter) > 0.5  # loaded at another dtype: a copy beside the mapped file
    weights = per_parameter * parameters + (reference.weight_bytes if converted else 0)
    logits = REFERENCE_LOGIT_COPIES * REFERENCE_LONGEST_ITEM * reference.vocab_size * 4
    need = REFERENCE_BASE + weights + logits + SESSION_BASE + load_bytes(facts, model_bytes)
    how = (f"converted beside its file of {stored:.0f} bytes a parameter" if converted else "mapped from its file")
    half = "pass --reference-precision bf16, " if precision == "fp32" and stored < 3 else ""  # a bf16 file: mapped
    return Need(f"the {precision} reference", int(need),
                f"{per_parameter} bytes a parameter for {_billions(parameters)} parameters, {how}, and its logits, "
                f"beside the built model", f"{half}pass a smaller --reference, or run the parity suite once on a "
                "larger machine and copy its cached reference (<cache>/reference/) here")


def choose_reference(setting: str, reference: ModelFacts, facts: ModelFacts, model_bytes: int,
                     available: Available) -> tuple[str, Need]:
    """The reference's precision and need: the precision set, or (``auto``) fp32 when it fits, else bf16."""
    if setting != "auto":
        return setting, reference_need(reference, setting, facts, model_bytes)
    exact, half = (reference_need(reference, precision, facts, model_bytes) for precision in ("fp32", "bf16"))
    if exact.bytes <= available.bytes or half.bytes >= exact.bytes:  # bf16 from a fp32 file adds a copy
        return "fp32", exact
    return "bf16", half


def suite_need(suite: str, facts: ModelFacts, model_bytes: int, prompt_tokens: int | None = None,
               released: bool = False, twin: bool = True) -> Need:
    """A shipped suite's peak in a session: the session's own, the model loaded, what the suite holds besides
    (``SUITES``; the twin only with ``twin``), and a prompt of ``prompt_tokens`` (None: the suite's longest); with
    ``released``, the larger of its own copies without the session's model and the session's model with its twin."""
    shape = SUITES.get(suite, SuiteShape())
    tokens = shape.prompt_tokens if prompt_tokens is None else prompt_tokens
    load, prompt = load_bytes(facts, model_bytes), prefill_bytes(facts, tokens, shape.logit_copies)
    own = (shape.loaded * load + shape.processes * WORKER_BASE + shape.reserved_tokens * facts.kv_bytes_per_token)
    held = shape.held if twin else 0
    with_model = load + held * copy_bytes(facts, model_bytes)
    need = SESSION_BASE + prompt + (max(own, with_model) if released else own + with_model)
    copies = 1 + held + shape.loaded
    how = (f"{copies} {'copy' if copies == 1 else 'copies'} of the model's "
           f"{format_size(resident_bytes(facts, model_bytes))} of resident weights and a {tokens}-token prompt")
    return Need(suite, int(need), how + (", the session's model released" if released else ""),
                "pass --harness-memory if this machine has more, or run this suite on a larger machine", released,
                twin or not shape.held)


def longest_prompt_need(facts: ModelFacts, model_bytes: int, tokens: int) -> Need:
    """The length suite's longest prompt (each longer length the plan cannot fit skips on its own)."""
    need = suite_need(LENGTH_SUITE, facts, model_bytes, tokens)
    return replace(need, phase=f"a {tokens}-token prompt")


# -- the plan -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryPlan:
    available: Available
    must_run: tuple[Need, ...]  # phases this session cannot do without (the conversion, the build)
    may_run: tuple[Need, ...] = ()  # phases that skip when they cannot fit (the reference, each suite)
    suites: Mapping[str, Need] = field(default_factory=dict)
    reference: Need | None = None  # the parity reference at the precision chosen (one of may_run)
    reference_precision: str = "fp32"
    facts: ModelFacts | None = None  # the model the suites run (for the needs of other prompt lengths)
    model_bytes: int = 0
    longest_prompt: int | None = None  # the profile's cap on prompts (None: the context)

    def fits(self, need: Need) -> bool:
        return need.bytes <= self.available.bytes

    def refusal(self) -> str | None:
        """One line for the first phase that must run and cannot fit (None: every one fits)."""
        for need in self.must_run:
            if not self.fits(need):
                return self.too_big(need)
        return None

    def too_big(self, need: Need) -> str:
        return (f"memory plan: {need.phase} needs about {format_size(need.bytes)} at its peak ({need.basis}), "
                f"and {format_size(self.available.bytes)} is {self.available.source}; {need.way_out}")

    def as_run(self, need: Need, prompt_tokens: int | None = None) -> Need | None:
        """``need`` as the session runs it (a suite's, with a prompt of ``prompt_tokens``; None: its longest): whole
        where it fits, else with the session's model released (where the suite's own copies can do without it), else
        without the twin (for a suite that judges on it), else both; None: it skips."""
        if self.fits(need):
            return need
        shape = SUITES.get(need.phase)
        if shape is None or self.facts is None:
            return None
        for released, twin in ((True, True), (False, False), (True, False)):  # released; no twin; both
            if (released and not shape.alone) or (not twin and not shape.held):
                continue
            variant = suite_need(need.phase, self.facts, self.model_bytes, prompt_tokens, released, twin)
            if self.fits(variant):
                return variant
        return None

    def skip_reason(self, need: Need | None) -> str | None:
        """Why a phase that may run skips (None: it runs, or it is not planned)."""
        if need is None or self.as_run(need) is not None:
            return None
        return self.too_big(need)

    def release_reason(self, suite: str) -> str | None:
        """Why the session's model is released before ``suite`` (None: it is not)."""
        need = self.suites.get(suite)
        as_run = self.as_run(need) if need is not None else None
        if need is None or as_run is None or not as_run.released:
            return None
        return (f"{suite} needs {format_size(need.bytes)} beside the session's model and {format_size(as_run.bytes)} "
                f"with it released; {format_size(self.available.bytes)} is {self.available.source}")

    def twin_skip_reason(self, suite: str) -> str | None:
        """Why ``suite`` judges without the fp32-compute twin (None: the twin fits beside the rest)."""
        need = self.suites.get(suite)
        as_run = self.as_run(need) if need is not None else None
        if need is None or as_run is None or as_run.twin:
            return None
        return (f"the memory plan gives {suite} {format_size(need.bytes)} with the twin ({need.basis}) and "
                f"{format_size(as_run.bytes)} without it; {format_size(self.available.bytes)} is "
                f"{self.available.source}")

    def prompt_skip_reason(self, suite: str, tokens: int) -> str | None:
        """Why ``suite`` cannot prefill a prompt of ``tokens`` tokens (None: it fits)."""
        if self.facts is None:
            return None
        need = suite_need(suite, self.facts, self.model_bytes, tokens)
        if self.as_run(need, tokens) is not None:
            return None
        return self.too_big(replace(need, phase=f"{suite} with a {tokens}-token prompt"))

    def lines(self) -> list[str]:
        """The header's line: each phase's peak as it will run, the largest, and what skips."""
        needs = [*self.must_run, *self.may_run]
        if not needs:
            return []
        running = [as_run for as_run in map(self.as_run, needs) if as_run is not None]
        skipped = [need for need in self.may_run if self.as_run(need) is None]
        parts = [f"{need.phase} {format_size(need.bytes)}" for need in running if not need.phase.startswith("test_")]
        if suites := [need for need in running if need.phase.startswith("test_")]:
            top = max(suites, key=lambda need: need.bytes)
            how = f", {top.adjusted}" if top.adjusted else ""
            parts.append(f"the suites up to {format_size(top.bytes)} ({top.phase}{how})")
        peak = max((need.bytes for need in running), default=0)
        if any(not self.fits(need) for need in self.must_run):
            verdict = ": does not fit"
        elif skipped:
            verdict = f"; cannot fit, so will skip: {', '.join(f'{n.phase} ({format_size(n.bytes)})' for n in skipped)}"
        else:
            verdict = ": fits"
        planned = f"{', '.join(parts)}; peak {format_size(peak)}" if running else "nothing fits"
        memory = f"{format_size(self.available.bytes)} ({self.available.source})"
        return [f"harness: memory {memory}; plan: {planned}{verdict}"]


def plan(available: Available, must_run: Sequence[Need], suites: Sequence[Need], reference: Need | None = None,
         reference_precision: str = "fp32", facts: ModelFacts | None = None, model_bytes: int = 0,
         longest_prompt: int | None = None) -> MemoryPlan:
    may_run = (*([reference] if reference else []), *suites)
    return MemoryPlan(available, tuple(must_run), may_run, {need.phase: need for need in suites}, reference,
                      reference_precision, facts, model_bytes, longest_prompt)
