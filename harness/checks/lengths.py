"""Input-length stability: prompts of an exact token count cut from real text, what each length costs,
and the gates that compare the longest prompt with the shortest.

Attention makes a longer prompt cost more per token, in prefill and in every decode step, and the
KV cache grows with it: the gates bound how fast, relative to the shortest prompt, so a model or
runtime that collapses at long inputs fails while the expected growth passes.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.checks.memory import MB, MemorySampler, PeakRss, growth_to_judge, peak_growth
from harness.config.gates import Gate
from harness.errors import HarnessError
from harness.length_plan import CONTEXT_MARGIN as CONTEXT_MARGIN  # the plan, re-exported for the suite
from harness.length_plan import LENGTH_IDS as LENGTH_IDS
from harness.length_plan import LENGTHS as LENGTHS
from harness.length_plan import OUTPUT_TOKENS as OUTPUT_TOKENS
from harness.length_plan import longest_length as longest_length
from harness.length_plan import planned_lengths as planned_lengths
from harness.length_plan import resolve_length as resolve_length
from harness.locations import data_dir
from harness.runtime.protocol import Generation, Runtime, SearchOptions

if TYPE_CHECKING:
    from harness.capacity.plan import MemoryPlan

OPTIONS = SearchOptions(max_new_tokens=OUTPUT_TOKENS, min_new_tokens=OUTPUT_TOKENS)
TEXT = data_dir() / "texts" / "pride_and_prejudice.txt"

# Defaults measured on the default model with `pytest suites/test_input_length.py` (smoke: up to 2048
# tokens) and `... --harness-profile=full` (up to 8160), on a 2-core machine shared with three other
# jobs: timings vary by 2x from run to run there, so the timing gates keep about 1.5x to 2x of room.
GATES: tuple[Gate, ...] = (
    Gate("length_tpot_growth_per_1k_max", 3.0, "max", " per 1k tokens",
         "decode time per token (median gap between output tokens) at the longest prompt may be at most "
         "1 + this x (longest - shortest) / 1000 times the shortest's: attention reads the whole KV cache "
         "at every step. Measured: 0.9 to 1.9 up to 2048 tokens (2.9x to 4.9x), 0.3 to 2.1 up to 8160"),
    Gate("length_prefill_growth_per_1k_max", 0.75, "max", " per 1k tokens",
         "prefill time per prompt token at the longest prompt may be at most 1 + this x (longest - "
         "cheapest) / 1000 times the cheapest length's. Measured: 0.15 to 0.35 up to 2048 tokens, 0.1 "
         "to 0.36 up to 8160"),
    Gate("length_memory_ratio_max", 1.5, "max", "x",
         "peak RSS growth from the shortest to the longest prompt over what the KV cache (prompt + output) "
         "and the prefill's logits (one row per prompt token) take. Measured: 1.13 to 1.26 at 2048 tokens, "
         "1.11 to 1.23 at 8160 (Linux: each prompt's own peak). Without one (macOS, Windows) the peaks are "
         "bounds, and the gate passes only on the growth's upper bound: inconclusive when the bounds straddle it",
         "(0, inf)"),
)


class LengthError(HarnessError):
    """A prompt of the asked length cannot be built."""


# -- prompts of an exact length ------------------------------------------------------------------
def repeated_ids(runtime: Runtime, text: str, at_least: int, separator: str = "\n\n") -> list[int]:
    """``text`` encoded, repeated (``separator`` between copies) until it has ``at_least`` tokens."""
    copies = 1
    while True:
        ids = runtime.encode(separator.join([text] * copies))
        if len(ids) >= at_least:
            return ids
        if not ids:  # else the copies would grow without end
            raise LengthError(f"{text[:40]!r}... encodes to no tokens; the tokenizer cannot build a long prompt")
        copies = max(copies + 1, math.ceil(copies * at_least / max(len(ids), 1)))


def source_ids(runtime: Runtime, at_least: int, text_path: Path = TEXT) -> list[int]:
    """The encoded source text, repeated (blank line between copies) until it has ``at_least`` tokens."""
    return repeated_ids(runtime, text_path.read_text(encoding="utf-8").strip(), at_least)


def prompt_of_tokens(runtime: Runtime, ids: Sequence[int], n: int, at_most: bool = False) -> str:
    """The start of the text (``ids``) cut so that it encodes to exactly ``n`` tokens; ``at_most``: the
    longest cut that encodes to ``n`` tokens or fewer (for a tokenizer that cannot hit ``n`` exactly)."""
    if not 1 <= n <= len(ids):
        raise LengthError(f"cannot cut a {n}-token prompt from {len(ids)} tokens of text")
    if at_most:
        for count in range(n, 0, -1):  # a cut can re-encode longer; step back until it fits
            text = runtime.decode(ids[:count])
            if len(runtime.encode(text)) <= n:
                return text
        raise LengthError(f"no cut of the text encodes to {n} tokens or fewer")
    cut = n
    for _ in range(8):  # a cut can re-encode to a token more or less; step towards n
        text = runtime.decode(ids[:cut])
        got = len(runtime.encode(text))
        if got == n:
            return text
        cut = min(max(cut + n - got, 1), len(ids))
    raise LengthError(f"no cut of the text encodes to exactly {n} tokens (last try: {got}); "
                      "the tokenizer does not round-trip this text")


# -- one length --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LengthRun:
    """What one prompt length costs."""

    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    tpot_s: float | None  # (latency - TTFT) / (output tokens - 1)
    tpot_median_s: float | None  # median gap between output tokens: what the decode gate compares
    prefill_s: float
    peak_rss: int  # bytes, highest RSS during the generation (off Linux an upper bound, when there is one)
    peak: PeakRss | None = None  # its bounds and source (memory.MemorySampler.peak); None: peak_rss is exact

    @property
    def peak_bounds(self) -> PeakRss:
        return self.peak if self.peak is not None else PeakRss.exactly(self.peak_rss)

    @property
    def prefill_s_per_token(self) -> float:
        return self.prefill_s / self.prompt_tokens

    @property
    def decode_tokens_per_s(self) -> float | None:
        return None if not self.tpot_s else 1.0 / self.tpot_s

    def properties(self) -> dict[str, float | int | str | None]:
        """The metrics for the run's results (``record_property``)."""
        return {"prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens, "ttft_s": self.ttft_s,
                "tpot_s": self.tpot_s, "tpot_median_s": self.tpot_median_s,
                "prefill_s_per_token": self.prefill_s_per_token, "decode_tokens_per_s": self.decode_tokens_per_s,
                **self.peak_bounds.properties()}


def measure(runtime: Runtime, prompt: str, options: SearchOptions = OPTIONS) -> tuple[LengthRun, Generation]:
    """Generate once, timing prefill and decode and taking the peak RSS of the generation."""
    with MemorySampler() as sampler:
        generation = runtime.generate(prompt, options)
    gaps = [b - a for a, b in zip(generation.token_times, generation.token_times[1:], strict=False)]
    run = LengthRun(generation.prompt_tokens, generation.output_tokens, generation.ttft, generation.tpot,
                    statistics.median(gaps) if gaps else None, generation.prefill_seconds, sampler.peak_rss(),
                    sampler.peak())
    return run, generation


# -- the gates ---------------------------------------------------------------------------------------
def allowed_factor(per_1k: float, tokens: int) -> float:
    return 1.0 + per_1k * tokens / 1000


def _growth_over(base: float, base_tokens: int, longest: float, longest_tokens: int,
                 per_1k: float) -> tuple[float, float] | None:
    """How many times ``base`` ``longest`` is, and the factor the gate allows for the tokens between them;
    None when the growth is within it."""
    growth = longest / base
    allowed = allowed_factor(per_1k, longest_tokens - base_tokens)
    return None if growth <= allowed else (growth, allowed)


def tpot_verdict(shortest: LengthRun, longest: LengthRun, per_1k: float) -> str | None:
    """One line when decoding at the longest prompt is slower than the gate allows, else None."""
    if shortest.tpot_median_s is None or longest.tpot_median_s is None:
        return "decode time per token is unknown: fewer than 2 output tokens"
    over = _growth_over(shortest.tpot_median_s, shortest.prompt_tokens, longest.tpot_median_s,
                        longest.prompt_tokens, per_1k)
    if over is None:
        return None
    factor, allowed = over
    return (f"decode slows {factor:.1f}x from {shortest.prompt_tokens} to {longest.prompt_tokens} prompt tokens "
            f"({shortest.tpot_median_s * 1e3:.2f} -> {longest.tpot_median_s * 1e3:.2f} ms/token), over the "
            f"{allowed:.2f}x allowed (1 + {per_1k:g} per 1k tokens)")


def prefill_verdict(runs: Sequence[LengthRun], per_1k: float) -> str | None:
    """One line when prefill per token at the longest prompt grew more than the gate allows over the
    cheapest length (not the shortest: a 1-token prefill is all fixed overhead), else None."""
    longest = max(runs, key=lambda run: run.prompt_tokens)
    cheapest = min(runs, key=lambda run: run.prefill_s_per_token)
    if cheapest.prefill_s_per_token <= 0:
        return f"prefill time is not measured: {cheapest.prefill_s:g} s for {cheapest.prompt_tokens} tokens"
    over = _growth_over(cheapest.prefill_s_per_token, cheapest.prompt_tokens, longest.prefill_s_per_token,
                        longest.prompt_tokens, per_1k)
    if over is None:
        return None
    growth, allowed = over
    return (f"prefill costs {longest.prefill_s_per_token * 1e3:.2f} ms/token at {longest.prompt_tokens} tokens, "
            f"{growth:.1f}x the {cheapest.prefill_s_per_token * 1e3:.2f} ms/token at {cheapest.prompt_tokens}, "
            f"over the {allowed:.2f}x allowed (1 + {per_1k:g} per 1k tokens)")


@dataclass(frozen=True)
class MemoryModel:
    """What a generation must hold per token, read from the model's graph."""

    kv_bytes_per_token: int  # all present.* outputs, per position of prompt + output
    logits_bytes_per_token: int  # one row of logits per prompt position (the prefill returns them all)

    def predicted(self, prompt_tokens: int, output_tokens: int) -> int:
        return self.kv_bytes_per_token * (prompt_tokens + output_tokens) + self.logits_bytes_per_token * prompt_tokens


def memory_model(model_dir: Path) -> MemoryModel | None:
    """Bytes per token of the KV cache and logits from the decoder's ONNX outputs (their fixed dims
    times their element size); None when the folder has no readable graph with both."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = json.loads((model_dir / "genai_config.json").read_text(encoding="utf-8"))["model"]
        decoder = model["decoder"]
        graph = onnx.load(str(model_dir / decoder["filename"]), load_external_data=False).graph
    except (OSError, KeyError, ValueError, TypeError, DecodeError):
        return None
    outputs = decoder.get("outputs", {})
    names = (("present_key_names", "present.%d.key"), ("present_value_names", "present.%d.value"))
    patterns = [re.escape(outputs.get(key, default)).replace("%d", r"\d+") for key, default in names]
    kv = logits = kv_itemsize = 0
    for output in graph.output:
        tensor = output.type.tensor_type
        size = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize if tensor.elem_type else 0
        per_token = size * math.prod(d.dim_value for d in tensor.shape.dim if d.dim_value > 0)
        if output.name == outputs.get("logits", "logits"):
            logits = per_token
        elif any(re.fullmatch(pattern, output.name) for pattern in patterns):
            kv += per_token
            kv_itemsize = size
    # The 0.18 builder leaves the KV heads symbolic in the graph: the config's shape is the reliable one.
    shape = [decoder.get(key) for key in ("num_hidden_layers", "num_key_value_heads", "head_size")]
    if kv_itemsize and all(isinstance(value, int) and value > 0 for value in shape):
        kv = 2 * kv_itemsize * math.prod(shape)  # keys and values of every layer
    return MemoryModel(kv, logits) if kv and logits else None


def memory_verdict(shortest: LengthRun, longest: LengthRun, model: MemoryModel,
                   limit: float) -> tuple[float, str | None]:
    """The ratio of measured to predicted peak growth, and one line when it is over ``limit``. Where the peaks are
    bounds (off Linux), the growth is the bound that decides; memory.PeakInconclusive when they straddle the limit."""
    kv = model.kv_bytes_per_token * (longest.prompt_tokens - shortest.prompt_tokens)
    logits = model.logits_bytes_per_token * (longest.prompt_tokens - shortest.prompt_tokens)
    growth = peak_growth(shortest.peak_bounds, longest.peak_bounds)
    measured = growth_to_judge(growth, limit * (kv + logits))
    ratio = measured / (kv + logits)
    if ratio <= limit:
        return ratio, None
    grows, bounds = ("grows", "") if growth.exact else ("grows at least", f"; {growth.sources()}")
    return ratio, (f"peak RSS {grows} {measured / MB:.0f} MB from {shortest.prompt_tokens} to "
                   f"{longest.prompt_tokens} prompt tokens, {ratio:.2f}x the {(kv + logits) / MB:.0f} MB that the KV "
                   f"cache ({kv / MB:.0f} MB) and the prefill's logits ({logits / MB:.0f} MB) take (limit {limit:g}x)"
                   f"{bounds}")


def table(runs: Sequence[LengthRun]) -> str:
    """Every measured length, one line each: the failure's detail."""
    lines = ["prompt tokens   TTFT s   TPOT ms (median)   prefill ms/token   peak RSS MB"]
    for run in runs:
        tpot = f"{run.tpot_median_s * 1e3:16.2f}" if run.tpot_median_s is not None else f"{'-':>16}"
        lines.append(f"{run.prompt_tokens:13d} {run.ttft_s:8.3f} {tpot}   {run.prefill_s_per_token * 1e3:16.3f} "
                     f"{run.peak_rss / MB:13.1f}")
    return "\n".join(lines)


# -- the suite's sweep -------------------------------------------------------------------------------
class LengthSweep:
    """The input-length suite's prompts and measurements on one runtime: the start of a real text (fixtures/texts/)
    cut to exact token counts, enough of it for a prompt one token over the context, each length answered with
    exactly ``OUTPUT_TOKENS`` new tokens (``options``) and measured once, for its own test and for the gates (after
    ``warm_up``). ``suite`` names the suite to the memory plan."""

    options = OPTIONS

    def __init__(self, runtime: Runtime, suite: str) -> None:
        self.runtime = runtime
        self.suite = suite
        self.text_ids = source_ids(runtime, runtime.info.context_length + 1)
        self._measured: dict[int, tuple[LengthRun, Generation]] = {}

    def prompt(self, n: int) -> str:
        """The text's start cut so that it encodes to exactly ``n`` tokens."""
        return prompt_of_tokens(self.runtime, self.text_ids, n)

    def length(self, length_id: str, cap: int | None, memory: MemoryPlan | None) -> tuple[int | None, str]:
        """The token count a parametrized length id measures, or None and why not: over the context or the
        profile's ``cap``, or a prefill the memory plan cannot fit."""
        n, why = resolve_length(length_id, self.runtime.info.context_length, cap)
        if n is None:
            return None, why
        too_big = memory.prompt_skip_reason(self.suite, n) if memory else None
        if too_big is not None:
            return None, too_big
        return n, ""

    def planned(self, cap: int | None, memory: MemoryPlan | None) -> list[int]:
        """The lengths measured, shortest first: the profile's, without those whose prefill the memory plan cannot
        fit."""
        planned = planned_lengths(self.runtime.info.context_length, cap)
        return [n for n in planned if memory is None or memory.prompt_skip_reason(self.suite, n) is None]

    def warm_up(self) -> LengthSweep:
        """One generation before the measured ones; the sweep itself."""
        self.runtime.generate(self.prompt(16), OPTIONS)
        return self

    def measure(self, n: int) -> tuple[LengthRun, Generation]:
        """The ``n``-token prompt's measurement and answer, generated once."""
        if n not in self._measured:
            self._measured[n] = measure(self.runtime, self.prompt(n))
        return self._measured[n]

    def runs(self, lengths: Sequence[int]) -> list[LengthRun]:
        """The measurements of ``lengths``."""
        return [self.measure(n)[0] for n in lengths]

    def table(self, lengths: Sequence[int]) -> str:
        """Every measured length of ``lengths``, one line each: a failure's detail."""
        return table(self.runs(lengths))
