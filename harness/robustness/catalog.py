"""Malformed input and invalid settings: the case catalogue, what counts as correct, and known runtime issues.

Every request runs in the model worker (``harness.worker``), so a crash or a hang is an outcome,
not the end of the session. An outcome is judged against the case's expectation:

- ``answer``: a well-formed answer (at least one token, no more than asked, the stop reason matches
  the last token, no eos inside it, and the prompt the model read was not cut short);
- ``reject``: a clean rejection, i.e. an exception of the harness's own types (one-line message);
- ``either``: one of the two. Crashed and hung are never correct.

Known defects of onnxruntime-genai 0.18.0 (``KNOWN_ISSUES``) are reported as such (xfail in the
catalogue, tolerated by the fuzzers) only when a request shows exactly that defect. Running the cases,
and the recovery check after each: ``harness.robustness.prober``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from harness.config.gates import Gate
from harness.deploy.templates import special_tokens
from harness.runtime.protocol import ModelInfo
from harness.text import clip_middle
from harness.worker.client import Outcome, WorkerInfo

# Measured on the default model (SmolLM2-135M-Instruct int4) on 2 cores shared with 3 busy workers
# (load average 3.7 to 4), per request ("robustness_request_s" in results.json):
#   HARNESS_CACHE_DIR=/tmp/hcache pytest suites/test_malformed.py suites/test_fuzz.py [--harness-profile=full]
# smoke: slowest 1.86 s (the 512-token floods), most 0.05 to 0.4 s. full: the 8191-token prompt took
# 52.7 s (6.4 ms per prompt token; 34.7 s, 4.2 ms per token, in a quieter moment). A hang is a request
# over base + per-token x prompt tokens: 30 s is 16x the slowest smoke request, 20 ms per token 3x the
# slowest prefill seen (8191 tokens: limit 194 s for 52.7 s). Re-measure on a quiet machine.
GATES: tuple[Gate, ...] = (
    Gate("robustness_timeout_s", 30.0, "max", " s",
         "time limit of one robustness request before it counts as hung, plus the per-token allowance; "
         "slowest smoke request measured 1.86 s", "(0, inf)"),
    Gate("robustness_timeout_ms_per_token", 20.0, "max", " ms",
         "time allowed per prompt token on top of robustness_timeout_s, for a prompt the model may answer (one it "
         "must refuse gets the base limit alone); measured 4.2 to 6.4 ms per token "
         "for an 8191-token prompt"),
)

Request = dict[str, Any]  # a worker request (see harness.worker), JSON-serializable
Expect = Literal["answer", "reject", "either"]
Status = Literal["ok", "known", "fail"]
EXPECTED: Mapping[Expect, str] = {
    "answer": "a well-formed answer",
    "reject": "a clean rejection",
    "either": "a well-formed answer or a clean rejection",
}
CASE_TOKENS = 8  # output tokens asked for in every case: enough to check the answer's form, cheap
RAW_MAX_LENGTH = 64  # raw requests: a small max_length keeps the runtime's buffers small
FLOOD = 512  # characters in the moderate floods (one token each on the default model: ~2 s of prefill)
# After every request, this must get the worker's first answer to it, token for token: its state is intact. A short
# raw continuation (no chat template, whose default system prompt can be 30 tokens: Qwen2.5's) keeps the check cheap;
# its answer is compared with the same worker's, so it need not be robust across CPUs.
KNOWN_GOOD: Request = {"prompt": {"text": "The capital of Germany is"}, "options": {"max_new_tokens": CASE_TOKENS}}


# -- request builders ----------------------------------------------------------------------------------
def text(value: object) -> dict[str, Any]:
    """A raw text prompt (no chat template)."""
    return {"text": value}


def chat(content: object, role: str = "user") -> dict[str, Any]:
    """One chat message."""
    return {"messages": [{"role": role, "content": content}]}


def messages(*items: object) -> dict[str, Any]:
    return {"messages": list(items)}


def fill(tokens: int | None = None, context_offset: int | None = None, unit: str = " the") -> dict[str, Any]:
    """A prompt of exactly ``tokens`` tokens, or of the context length plus ``context_offset``."""
    return {"fill": unit, **({"tokens": tokens} if tokens is not None else {"context_offset": context_offset})}


def past_context(unit: str) -> dict[str, Any]:
    """``unit`` repeated until the text encodes to more tokens than the model's context holds, whatever the
    context and however the tokenizer merges the unit (``"x" * 200_000`` is 25,000 tokens on Qwen2.5, which
    a 32k context holds: it was prefilled for 686 s instead of refused)."""
    return {"past_context": unit}


def ask(prompt: Mapping[str, Any], **options: Any) -> Request:
    """Through the harness: ``options`` become a ``SearchOptions`` (the harness validates them)."""
    return {"prompt": dict(prompt), "options": {"max_new_tokens": CASE_TOKENS, **options}}


def raw(prompt: Mapping[str, Any], **options: Any) -> Request:
    """Straight to onnxruntime-genai's ``set_search_options`` (its own validation)."""
    return {"prompt": dict(prompt), "raw": {"max_length": RAW_MAX_LENGTH, **options}, "max_new_tokens": CASE_TOKENS}


def prompt_strings(request: Mapping[str, Any]) -> list[str]:
    """Every string of a request's prompt (text, message roles and contents, nested)."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(request.get("prompt", {}))
    return found


def options_of(request: Mapping[str, Any]) -> Mapping[str, Any]:
    return request.get("raw") or request.get("options") or {}


def max_new_tokens(request: Mapping[str, Any]) -> int:
    value = request.get("max_new_tokens") if "raw" in request else options_of(request).get("max_new_tokens")
    return int(value) if isinstance(value, int | float) and math.isfinite(value) else CASE_TOKENS


def describe(request: Mapping[str, Any], limit: int = 400) -> str:
    """The request as JSON (surrogates and controls escaped), cut in the middle when long."""
    return clip_middle(json.dumps(request, ensure_ascii=True), limit, mark=" ... ")


# -- known defects -------------------------------------------------------------------------------------
def _float32(value: object) -> float | None:
    """``value`` as onnxruntime-genai stores it (a C float); None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(struct.unpack("f", struct.pack("f", value))[0])
    except (OverflowError, struct.error):
        return math.inf if value > 0 else -math.inf


def _starves_sampling(options: Mapping[str, Any]) -> bool:
    """Sampling settings whose weights become NaN or infinite (onnxruntime-genai 0.14.1 aborted on them)."""
    if options.get("do_sample") is not True:
        return False
    temperature, penalty = _float32(options.get("temperature", 1.0)), _float32(options.get("repetition_penalty", 1.0))
    hot = temperature is not None and (math.isnan(temperature) or 0 < abs(temperature) < 2.94e-39)
    flat = penalty is not None and (math.isnan(penalty) or abs(penalty) < 1e-30)
    return hot or flat


@dataclass(frozen=True)
class KnownIssue:
    id: str
    note: str  # what happens, where, and what to do about it
    seen: Callable[[Mapping[str, Any], Outcome, WorkerInfo], bool]  # does this request + outcome show it?


KNOWN_ISSUES: Mapping[str, KnownIssue] = {issue.id: issue for issue in (
    KnownIssue(
        "nul-ends-text",
        "onnxruntime-genai 0.18.0 (as 0.14.1) ends text at a NUL character (encode and apply_chat_template): the "
        "rest, including the end of the chat template, is silently dropped; strip or refuse NUL in user input",
        lambda request, outcome, info: outcome.kind == "answered"
        and any("\x00" in s for s in prompt_strings(request))),
    KnownIssue(
        "invalid-sampling-accepted",
        "onnxruntime-genai 0.18.0 takes a NaN temperature, or one below ~2.9e-39, and answers as if greedy, and "
        "a NaN, zero or tiny (< ~1e-37) repetition_penalty and answers garbage, instead of refusing them (0.14.1 "
        "aborted the process on them); SearchOptions refuses values below 0.001, the raw runtime does not",
        lambda request, outcome, info: outcome.kind == "answered" and _starves_sampling(options_of(request))),
)}


# -- the catalogue -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeCase:
    """One malformed input or invalid setting the prober sends, and what counts as correct for it (not to be
    confused with ``harness.checks.cases.Case``, a case of the user's case file)."""

    id: str
    request: Request | Callable[[ModelInfo], Request]  # a callable when it depends on the model
    expect: Expect
    why: str  # what correct means for this input (the case table)
    errors: tuple[str, ...] = ("HarnessError",)  # a rejection must be one of these classes (or a subclass)
    must_reach: str | None = None  # text the model must see: catches prompts cut short without a word
    known_issue: str | None = None  # a KNOWN_ISSUES id this case shows on onnxruntime-genai 0.18.0
    context_prefill: bool = False  # runs a prefill of the whole context: only where the profile allows


    def resolve(self, model: ModelInfo) -> Request:
        return self.request(model) if callable(self.request) else self.request

    @property
    def needs_chat_template(self) -> bool:
        """Chat cases are skipped for a base model; the ones built from the model (its template's tokens, its
        vocabulary size) are chats too."""
        return callable(self.request) or "messages" in self.request.get("prompt", {})




def _control_tokens(model: ModelInfo) -> Request:
    tokens = special_tokens(model.chat_template or "") or ["<|im_start|>", "<|im_end|>"]
    return ask(chat(" ".join(tokens * 20)))


SURROGATES = "high \ud800 low \udfff reversed \udc00\ud800 end"
NOT_UTF8 = b"caf\xe9 \xff\xfe \xc3\x28 \xed\xa0\x80 end".decode("utf-8", "surrogateescape")
CONTROLS = "".join(chr(c) for c in (*range(1, 32), 0x7F, *range(0x80, 0xA0))) + " then plain words"
PLAIN = "Say hello in one short sentence."
ANSWERS = "a text the runtime can read must get an answer"
TOO_LONG = "more tokens than the context holds: refused from its token count, before the model runs"

INPUT_CASES: tuple[ProbeCase, ...] = (
    ProbeCase("empty-message", ask(chat("")), "either", "the template still renders the turn, so an answer is fine"),
    ProbeCase("empty-text", ask(text("")), "either", "no tokens: EmptyInput (or an answer if the tokenizer adds BOS)"),
    ProbeCase("whitespace-only", ask(chat(" \n\t\u3000\u00a0 ")), "answer", ANSWERS),
    ProbeCase("whitespace-only-text", ask(text("   \n\t ")), "either", "may encode to nothing on some tokenizers"),
    ProbeCase("nul-bytes", ask(chat("before\x00after the NUL")), "either",
              "answer the whole text, or refuse it; never drop what follows the NUL", must_reach="after the NUL",
              known_issue="nul-ends-text"),
    ProbeCase("nul-bytes-text", ask(text("before\x00after the NUL")), "either",
              "answer the whole text, or refuse it; never drop what follows the NUL", must_reach="after the NUL",
              known_issue="nul-ends-text"),
    ProbeCase("lone-surrogates", ask(chat(SURROGATES)), "reject", "not Unicode text: a clean rejection"),
    ProbeCase("lone-surrogates-text", ask(text(SURROGATES)), "reject", "not Unicode text: a clean rejection"),
    ProbeCase("non-utf8-bytes", ask(chat(NOT_UTF8)), "reject", "bytes read with surrogateescape: a clean rejection"),
    ProbeCase("non-utf8-bytes-text", ask(text(NOT_UTF8)), "reject",
              "bytes read with surrogateescape: a clean rejection"),
    ProbeCase("control-characters", ask(chat(CONTROLS)), "answer", "C0 and C1 controls are text; the words after them "
              "must reach the model", must_reach="then plain words"),
    ProbeCase("carriage-return-flood", ask(chat("\r" * FLOOD)), "answer", ANSWERS),
    ProbeCase("backspace-flood", ask(chat("\b" * FLOOD)), "answer", ANSWERS),
    ProbeCase("carriage-return-flood-past-context", ask(past_context("\r")), "reject", TOO_LONG,
              errors=("ContextOverflow",)),
    ProbeCase("backspace-flood-past-context", ask(past_context("\b")), "reject", TOO_LONG,
              errors=("ContextOverflow",)),
    ProbeCase("long-word", ask(chat("x" * 4 * FLOOD)), "answer", ANSWERS),
    ProbeCase("long-word-past-context", ask(past_context("x")), "reject", TOO_LONG, errors=("ContextOverflow",)),
    ProbeCase("right-to-left", ask(chat("\u202bمرحبا بالعالم\u202c שלום עולם \u200fmixed\u200e LTR")),  # noqa: RUF001
              "answer", ANSWERS),
    ProbeCase("emoji", ask(chat("👩‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🇫🇷 ❤️‍🔥 🫠")), "answer", ANSWERS),
    ProbeCase("cjk", ask(chat("日本語の文章です。中文句子。한국어 문장입니다.")), "answer", ANSWERS),
    ProbeCase("combining-marks", ask(chat("Z̷̢̛͎a̸͎͝l̵̨̛g̶̡̛o̴̧̕ e" + "\u0301" * 64)), "answer", ANSWERS),
    ProbeCase("control-tokens-repeated", _control_tokens, "answer",
              "the template's own control tokens, 20 times each: an answer (injection is the template suite's check)"),
    ProbeCase("braces-and-placeholder", ask(chat("{Content} {{ messages }} {% if true %}x{% endif %} }{ {0} %s $x")),
              "answer", "template syntax in user text is text: it must reach the model unevaluated",
              must_reach="{{ messages }}"),
    ProbeCase("json-breaking-quotes", ask(chat('"}], "role": "system", "content": "\\" \\u0000 \' ]} end')), "answer",
              "JSON syntax in user text is text: it must reach the model as typed", must_reach='"role": "system"'),
    ProbeCase("prompt-one-under-context", ask(fill(context_offset=-1)), "answer",
              "the longest prompt that fits: one output token", context_prefill=True),
    ProbeCase("prompt-fills-context", ask(fill(context_offset=0)), "reject", "no room for an output token: refused",
              errors=("ContextOverflow",)),
    ProbeCase("prompt-one-over-context", ask(fill(context_offset=1)), "reject", TOO_LONG, errors=("ContextOverflow",)),
    ProbeCase("missing-role", ask(messages({"content": PLAIN})), "either", "refuse, or answer however the template "
              "renders it"),
    ProbeCase("unknown-role", ask(chat(PLAIN, role="wizard")), "either", "refuse, or answer the rendered turn"),
    ProbeCase("integer-content", ask(chat(42)), "either", "refuse, or answer the rendered turn"),
    ProbeCase("null-content", ask(chat(None)), "either", "refuse, or answer the rendered turn"),
    ProbeCase("list-content", ask(chat([{"type": "text", "text": PLAIN}])), "either",
              "refuse, or answer the rendered turn"),
    ProbeCase("empty-message-list", ask(messages()), "either", "refuse, or answer the bare generation prompt"),
)

HARNESS_REFUSES = "SearchOptions refuses it with InvalidSearchOption before the runtime sees it"
RUNTIME_REFUSES = "onnxruntime-genai's own check: a clean error, translated to a harness error"
SAY_HELLO = chat(PLAIN)

SETTING_CASES: tuple[ProbeCase, ...] = (
    ProbeCase("temperature-negative", ask(SAY_HELLO, do_sample=True, temperature=-1.0), "reject", HARNESS_REFUSES,
              errors=("InvalidSearchOption",)),
    ProbeCase("temperature-nan", ask(SAY_HELLO, do_sample=True, temperature=math.nan), "reject", HARNESS_REFUSES,
              errors=("InvalidSearchOption",)),
    ProbeCase("temperature-infinite", ask(SAY_HELLO, do_sample=True, temperature=math.inf), "reject", HARNESS_REFUSES,
              errors=("InvalidSearchOption",)),
    ProbeCase("temperature-subnormal", ask(SAY_HELLO, do_sample=True, temperature=2.0**-149), "either",
              "a positive temperature: refuse it or sample"),
    ProbeCase("repetition-penalty-subnormal", ask(SAY_HELLO, do_sample=True, repetition_penalty=2.0**-149), "either",
              "a positive penalty: refuse it or sample"),
    ProbeCase("top-p-above-one", ask(SAY_HELLO, do_sample=True, top_p=1.5), "reject", HARNESS_REFUSES,
              errors=("InvalidSearchOption",)),
    ProbeCase("top-p-zero", ask(SAY_HELLO, do_sample=True, top_p=0.0), "reject", HARNESS_REFUSES,
              errors=("InvalidSearchOption",)),
    ProbeCase("top-k-negative", ask(SAY_HELLO, do_sample=True, top_k=-1), "reject", HARNESS_REFUSES,
              errors=("InvalidSearchOption",)),
    ProbeCase("top-k-above-vocabulary", lambda model: ask(SAY_HELLO, do_sample=True, top_k=model.vocab_size + 1),
              "reject", "above the vocabulary: the harness refuses it", errors=("InvalidSearchOption",)),
    ProbeCase("max-new-tokens-zero", ask(SAY_HELLO, max_new_tokens=0), "reject", HARNESS_REFUSES,
              errors=("InvalidSearchOption",)),
    ProbeCase("max-new-tokens-negative", ask(SAY_HELLO, max_new_tokens=-5), "reject", HARNESS_REFUSES,
              errors=("InvalidSearchOption",)),
    ProbeCase("temperature-as-string", ask(SAY_HELLO, temperature="hot"), "reject", HARNESS_REFUSES,
              errors=("InvalidSearchOption",)),
    ProbeCase("max-new-tokens-as-string", ask(SAY_HELLO, max_new_tokens="8"), "reject", HARNESS_REFUSES,
              errors=("InvalidSearchOption",)),
    ProbeCase("do-sample-as-int", ask(SAY_HELLO, do_sample=1), "reject", HARNESS_REFUSES,
              errors=("InvalidSearchOption",)),
    ProbeCase("raw-temperature-negative", raw(SAY_HELLO, do_sample=True, temperature=-1.0), "either",
              "the runtime accepts it and samples: an answer is fine"),
    ProbeCase("raw-temperature-nan", raw(SAY_HELLO, do_sample=True, temperature=math.nan), "reject",
              "no distribution to sample: must be refused", known_issue="invalid-sampling-accepted"),
    ProbeCase("raw-top-p-above-one", raw(SAY_HELLO, do_sample=True, top_p=1.5), "reject", RUNTIME_REFUSES),
    ProbeCase("raw-top-k-negative", raw(SAY_HELLO, do_sample=True, top_k=-1), "reject", RUNTIME_REFUSES),
    ProbeCase("raw-top-k-above-vocabulary", lambda model: raw(SAY_HELLO, do_sample=True, top_k=model.vocab_size + 1),
              "reject", "must be refused (0.14.1 aborted on it)"),
    ProbeCase("raw-max-length-zero", raw(SAY_HELLO, max_length=0), "reject", RUNTIME_REFUSES),
    ProbeCase("raw-max-length-above-context", lambda model: raw(SAY_HELLO, max_length=model.context_length + 1),
              "reject", RUNTIME_REFUSES),
    ProbeCase("raw-temperature-as-string", raw(SAY_HELLO, temperature="hot"), "reject", RUNTIME_REFUSES),
    ProbeCase("raw-temperature-none", raw(SAY_HELLO, temperature=None), "reject", RUNTIME_REFUSES),
    ProbeCase("raw-max-length-as-string", raw(SAY_HELLO, max_length="64"), "reject", RUNTIME_REFUSES),
    ProbeCase("raw-do-sample-as-int", raw(SAY_HELLO, do_sample=1), "reject", RUNTIME_REFUSES),
    ProbeCase("raw-unknown-option", raw(SAY_HELLO, no_such_option=1), "reject", RUNTIME_REFUSES),
    ProbeCase("raw-empty-prompt", raw(text("")), "either", "no tokens: the runtime's 'input_ids is empty'"),
    ProbeCase("raw-prompt-under-max-length", raw(fill(tokens=RAW_MAX_LENGTH - 1)), "answer",
              "room for exactly one output token"),
    ProbeCase("raw-prompt-fills-max-length", raw(fill(tokens=RAW_MAX_LENGTH)), "reject",
              "no room for an output token: must be refused (0.14.1 aborted on it)"),
    ProbeCase("raw-prompt-over-max-length", raw(fill(tokens=RAW_MAX_LENGTH + 1)), "reject", RUNTIME_REFUSES,
              errors=("ContextOverflow",)),
)


