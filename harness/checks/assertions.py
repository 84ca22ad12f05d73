"""The assertion types of case files: each turns (expected value, answer) into a score in [0, 1].

Boolean checks score 0 or 1; scored checks (token-f1, rouge-l, keyword-recall) pass at their
threshold. Any type takes a ``not-`` prefix, which inverts pass and fail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
import regex

from harness.checks import quality
from harness.runtime.protocol import Generation

NEGATION = "not-"
REGEX_TIMEOUT_S = 1.0  # a case's pattern on one answer; a sane one takes microseconds on a 96-token answer
_FENCE = re.compile(r"^```(?:json)?\s*\n(.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True)
class AnswerContext:
    """What some checks need besides the answer text."""

    eos_token_ids: tuple[int, ...]
    context_length: int
    control_tokens: tuple[str, ...]  # strings that must never appear in an answer
    control_token_ids: tuple[int, ...]  # ids that must never be generated (except the final eos)


@dataclass(frozen=True)
class AssertionResult:
    passed: bool
    score: float
    detail: str  # why it failed (or what was measured), for the failure message


Check = Callable[[Any, Generation, AnswerContext], tuple[float, str]]


def _lower(values: Sequence[str]) -> list[str]:
    return [value.lower() for value in values]


def _found(text: str, needles: Sequence[str]) -> list[str]:
    return [needle for needle in needles if needle in text]


def _contains_any(needles: Sequence[str], text: str) -> tuple[float, str]:
    found = _found(text, needles)
    return float(bool(found)), f"found {found}" if found else f"none of {list(needles)} found"


def _contains_all(needles: Sequence[str], text: str) -> tuple[float, str]:
    missing = [needle for needle in needles if needle not in text]
    return float(not missing), f"missing {missing}" if missing else f"all of {list(needles)} found"


def parse_json_answer(text: str) -> Any:
    """The answer as JSON (a surrounding ```json fence is allowed); raises ValueError."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    return json.loads(fenced.group(1) if fenced else stripped)


def _is_json(_: Any, answer: Generation, __: AnswerContext) -> tuple[float, str]:
    try:
        parse_json_answer(answer.text)
    except ValueError as exc:
        return 0.0, f"not JSON: {exc}"
    return 1.0, "valid JSON"


def _json_schema(schema: dict[str, Any], answer: Generation, __: AnswerContext) -> tuple[float, str]:
    try:
        document = parse_json_answer(answer.text)
    except ValueError as exc:
        return 0.0, f"not JSON: {exc}"
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(root)"
        return 0.0, f"JSON does not match the schema at {where}: {error.message}"
    return 1.0, "JSON matches the schema"


def _regex(pattern: str, answer: Generation, __: AnswerContext) -> tuple[float, str]:
    """``re`` syntax, run by the ``regex`` package for its time limit: a pattern that backtracks catastrophically
    (``^([^@]+)+@$`` on a long answer) would otherwise hang the run."""
    try:
        found = regex.search(pattern, answer.text, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        return 0.0, (f"pattern {pattern!r} ran over {REGEX_TIMEOUT_S:g} s on this answer (catastrophic "
                     "backtracking); rewrite it without nested repetition")
    return float(found is not None), f"pattern {pattern!r}"


def _stops_cleanly(_: Any, answer: Generation, context: AnswerContext) -> tuple[float, str]:
    if answer.stop_reason == "eos":
        return 1.0, f"ended by eos after {answer.output_tokens} tokens"
    return 0.0, f"ran to the length limit ({answer.output_tokens} tokens) without an eos token"


def _no_template_leak(_: Any, answer: Generation, context: AnswerContext) -> tuple[float, str]:
    leaks = template_leaks(answer, context)
    return float(not leaks), "; ".join(leaks) if leaks else "no control tokens"


def template_leaks(answer: Generation, context: AnswerContext) -> list[str]:
    """Control tokens in the text, or generated as tokens anywhere but as the final eos."""
    problems = [f"text contains {token!r}" for token in _found(answer.text, context.control_tokens)]
    body = answer.token_ids[:-1] if answer.stop_reason == "eos" else answer.token_ids
    generated = [(i, t) for i, t in enumerate(body) if t in context.control_token_ids]
    if generated:
        problems.append(f"generated control token ids {[t for _, t in generated]} at positions "
                        f"{[i for i, _ in generated]}")
    return problems


def _scored(metric: Callable[[str, Any], float], label: str) -> Check:
    def check(value: Any, answer: Generation, __: AnswerContext) -> tuple[float, str]:
        score = metric(answer.text, value)
        return score, f"{label} {score:.2f}"

    return check


# type -> (check, what its value must be)
CHECKS: dict[str, tuple[Check, str]] = {
    "equals": (lambda v, a, c: (float(a.text.strip() == v.strip()), "answer differs"), "str"),
    "contains": (lambda v, a, c: _contains_all([v], a.text), "str"),
    "icontains": (lambda v, a, c: _contains_all([v.lower()], a.text.lower()), "str"),
    "contains-any": (lambda v, a, c: _contains_any(v, a.text), "str-list"),
    "contains-all": (lambda v, a, c: _contains_all(v, a.text), "str-list"),
    "icontains-any": (lambda v, a, c: _contains_any(_lower(v), a.text.lower()), "str-list"),
    "icontains-all": (lambda v, a, c: _contains_all(_lower(v), a.text.lower()), "str-list"),
    "starts-with": (lambda v, a, c: (float(a.text.lstrip().startswith(v)), f"starts with {a.text.lstrip()[:len(v)]!r}"),
                    "str"),
    "regex": (_regex, "regex"),
    "is-json": (_is_json, "none"),
    "json-schema": (_json_schema, "schema"),
    "max-tokens": (lambda v, a, c: (float(a.output_tokens <= v), f"{a.output_tokens} tokens"), "int"),
    "stops-cleanly": (_stops_cleanly, "none"),
    "no-template-leak": (_no_template_leak, "none"),
    "exact-match": (_scored(quality.exact_match, "exact match"), "str"),
    "token-f1": (_scored(quality.token_f1, "token F1"), "str"),
    "rouge-l": (_scored(quality.rouge_l, "ROUGE-L"), "str"),
    "keyword-recall": (_scored(quality.keyword_recall, "keyword recall"), "str-list"),
}
DEFAULT_THRESHOLDS = {"token-f1": 0.5, "rouge-l": 0.5, "keyword-recall": 1.0}


@dataclass(frozen=True)
class Assertion:
    type: str  # as written, with any not- prefix
    value: Any = None
    weight: float = 1.0
    threshold: float | None = None

    @property
    def negated(self) -> bool:
        return self.type.startswith(NEGATION)

    @property
    def base_type(self) -> str:
        return self.type.removeprefix(NEGATION)

    def evaluate(self, answer: Generation, context: AnswerContext) -> AssertionResult:
        check, _ = CHECKS[self.base_type]
        score, detail = check(self.value, answer, context)
        threshold = self.threshold if self.threshold is not None else DEFAULT_THRESHOLDS.get(self.base_type, 1.0)
        passed = score >= threshold
        return AssertionResult(passed != self.negated, score, detail)

    def describe(self) -> str:
        value = "" if self.value is None or isinstance(self.value, dict) else f" {self.value!r}"
        return f"{self.type}{value}"
