"""Fuzzing the model worker (``suites/test_fuzz.py``): Hypothesis strategies of prompts and search settings, and the
run that sends their examples through a ``Prober`` and shrinks a failure to a minimal input, saved as a reproducer.

Each example must get a well-formed answer or a clean rejection, and leave the model answering a known-good prompt as
before. Defects already known in onnxruntime-genai 0.18.0 (``harness.robustness.catalog.KNOWN_ISSUES``) are counted,
not failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.deploy.templates import special_tokens
from harness.robustness.catalog import KNOWN_ISSUES, PLAIN, chat, text
from harness.robustness.prober import Probe, Prober, write_reproducer
from harness.runtime.protocol import ModelInfo
from harness.worker.protocol import KINDS

FUZZ_TOKENS = 4  # output tokens per fuzz example: the form of the answer is checked, not its content
RecordProperty = Callable[[str, object], None]


def prompts(control_tokens: list[str], chats: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """Chat messages (unless ``chats`` is False: a base model) or raw text built from any code points
    (surrogates included: category Cs), controls, the template's own control tokens and other pieces known
    to trip parsers."""
    tricky = [*control_tokens, "\x00", "\r" * 64, "\b" * 64, "{Content}", "{{ messages }}", '"}]', "\\u0000",
              "\ufeff", "\u202e", "\U0001f44d\U0001f3fd"]
    pieces = st.one_of(
        st.text(st.characters(), max_size=16),
        st.text(st.characters(categories=["Cs", "Cc", "Cf", "Mn", "Zs", "Zl", "Zp"]), min_size=1, max_size=8),
        st.sampled_from(tricky),
    )
    content = st.lists(pieces, max_size=6).map("".join)
    return st.one_of(content.map(chat), content.map(text)) if chats else content.map(text)


def search_options(vocab_size: int) -> st.SearchStrategy[dict[str, Any]]:
    """Half the examples are settings the harness accepts, at their edges (subnormal temperatures, top_k
    up to the vocabulary size: they reach the runtime); the rest anything: NaN, infinities, negatives,
    out-of-range integers, wrong types (they exercise the validation)."""
    positive = st.floats(min_value=0, exclude_min=True, allow_infinity=False)
    accepted = st.fixed_dictionaries({}, optional={
        "max_new_tokens": st.integers(1, FUZZ_TOKENS),
        "do_sample": st.booleans(),
        "temperature": positive,
        "top_p": st.floats(0, 1, exclude_min=True),
        "top_k": st.integers(0, vocab_size),
        "repetition_penalty": positive,
    })
    wrong = st.sampled_from(["1", None, [1], {"value": 1}])
    number = st.one_of(st.floats(), st.integers(-3, 3), wrong)
    anything = st.fixed_dictionaries({}, optional={
        "max_new_tokens": st.one_of(st.integers(-2, FUZZ_TOKENS), wrong),
        "min_new_tokens": st.one_of(st.integers(-2, FUZZ_TOKENS + 1), wrong),
        "do_sample": st.one_of(st.booleans(), st.integers(0, 1), wrong),
        "temperature": number,
        "top_p": number,
        "top_k": st.one_of(st.integers(-3, 100), st.integers(vocab_size - 2, vocab_size + 2), st.integers(), wrong),
        "repetition_penalty": number,
    })
    return st.one_of(accepted, anything)


def prompt_requests(model: ModelInfo) -> st.SearchStrategy[dict[str, Any]]:
    """Worker requests of fuzzed prompts (``prompts``: spelling the model's own control tokens; raw text only for a
    base model without a chat template), each asking for ``FUZZ_TOKENS`` tokens."""
    tokens = special_tokens(model.chat_template or "")
    chats = model.chat_template is not None
    return prompts(tokens, chats).map(lambda prompt: {"prompt": prompt, "options": {"max_new_tokens": FUZZ_TOKENS}})


def setting_requests(model: ModelInfo) -> st.SearchStrategy[dict[str, Any]]:
    """Worker requests of one plain prompt (raw for a base model) with fuzzed search settings (``search_options``)."""
    prompt = chat(PLAIN) if model.chat_template is not None else text(PLAIN)  # raw for a base model
    return search_options(model.vocab_size).map(
        lambda options: {"prompt": prompt, "options": {"max_new_tokens": FUZZ_TOKENS, **options}})


def fuzz(prober: Prober, requests: st.SearchStrategy[dict[str, Any]], examples: int, name: str, run_dir: Path,
         record_property: RecordProperty) -> str | None:
    """Run Hypothesis over ``requests`` (``examples`` of them) and record the outcomes; None when every example is
    handled, else the failure message of the shrunk request, saved as a reproducer under ``run_dir``."""
    failures: list[Probe] = []
    seen = {"examples": 0}
    before = Counter(prober.tally)

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(request=requests)
    def check(request: dict[str, Any]) -> None:
        seen["examples"] += 1
        probe = prober.check(request, "either", known=KNOWN_ISSUES.values())
        if probe.verdict.status == "fail":
            failures.append(probe)  # Hypothesis replays the shrunk example last
            raise AssertionError(probe.verdict.line)

    try:
        check()
    except Exception:
        if not failures:
            raise
        path = write_reproducer(run_dir / "robustness" / "reproducers", name, failures[-1], prober.model.path,
                                prober.runtime)
        return f"{failures[-1].report()}\nshrunk by Hypothesis to this input; reproducer: {path}"
    finally:
        tally = prober.tally - before
        record_property("fuzz_examples", seen["examples"])  # including Hypothesis' shrinking steps
        record_property("fuzz_outcomes", {kind: tally[kind] for kind in KINDS})
        record_property("fuzz_known_issues", {key.removeprefix("known_issue_"): n for key, n in tally.items()
                                              if key.startswith("known_issue_")})
    return None
