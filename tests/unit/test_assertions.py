"""Every assertion type passes on an answer that satisfies it and fails on one that does not."""

from __future__ import annotations

import re
import time

import pytest

from harness.checks import quality
from harness.checks.assertions import CHECKS, REGEX_TIMEOUT_S, AnswerContext, Assertion
from harness.checks.cases import _schema
from harness.checks.output_format import StopFacts, format_problems, token_problems
from harness.runtime.protocol import Generation, SearchOptions

EOS, IM_START = 2, 1
CONTEXT = AnswerContext(eos_token_ids=(EOS,), context_length=64, control_tokens=("<|im_start|>", "<|im_end|>"),
                        control_token_ids=(IM_START, EOS))


def answer(text: str, tokens: tuple[int, ...] = (10, 11, EOS), stop: str = "eos", prompt: int = 5) -> Generation:
    return Generation(tuple(range(prompt)), tokens, text, stop, 0.0, tuple(0.1 * i for i in range(len(tokens))),  # type: ignore[arg-type]
                      0.1 * len(tokens))


PERSON = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
CASES = [  # type, value, answer that passes, answer that fails
    ("equals", "Paris", " Paris\n", "Paris."),
    ("contains", "Paris", "It is Paris.", "It is paris."),
    ("icontains", "PARIS", "It is paris.", "It is Rome."),
    ("contains-any", ["Rome", "Paris"], "Paris", "Berlin"),
    ("contains-all", ["red", "blue"], "red and blue", "red only"),
    ("icontains-any", ["ROME", "PARIS"], "paris", "berlin"),
    ("icontains-all", ["RED", "BLUE"], "Red, Blue", "Red"),
    ("starts-with", "{", '  {"a": 1', 'Here: {"a": 1}'),
    ("regex", r"\b8\b", "3 + 5 = 8", "3 + 5 = 88"),
    ("is-json", None, '```json\n{"a": [1, 2]}\n```', '{"a": [1, 2]'),
    ("json-schema", PERSON, '{"name": "Alice"}', '{"name": 30}'),
    ("exact-match", "The capital is Paris", "the capital is paris!", "The capital is Paris, France"),
    ("token-f1", "the capital of France is Paris", "France's capital is Paris", "Rome"),
    ("rouge-l", "the capital of France is Paris", "capital of France is Paris", "Paris is France capital"),
    ("keyword-recall", ["Paris", "France"], "paris, france", "Paris"),
]


@pytest.mark.parametrize(("kind", "value", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_assertion_passes_good_and_fails_bad(kind: str, value: object, good: str, bad: str) -> None:
    assertion = Assertion(kind, value)
    assert assertion.evaluate(answer(good), CONTEXT).passed
    failed = assertion.evaluate(answer(bad), CONTEXT)
    assert not failed.passed and failed.detail
    negated = Assertion("not-" + kind, value)
    assert negated.evaluate(answer(bad), CONTEXT).passed and not negated.evaluate(answer(good), CONTEXT).passed


def test_token_assertions() -> None:
    clean, truncated = answer("ok", (10, EOS)), answer("ok ok", (10, 10, 10), stop="length")
    assert Assertion("stops-cleanly").evaluate(clean, CONTEXT).passed
    assert not Assertion("stops-cleanly").evaluate(truncated, CONTEXT).passed
    assert Assertion("max-tokens", 2).evaluate(clean, CONTEXT).passed
    assert not Assertion("max-tokens", 2).evaluate(truncated, CONTEXT).passed
    leak = Assertion("no-template-leak")
    assert leak.evaluate(clean, CONTEXT).passed
    assert not leak.evaluate(answer("hi <|im_end|>"), CONTEXT).passed
    verdict = leak.evaluate(answer("hi", (10, IM_START, 11, EOS)), CONTEXT)  # a skipped special token
    assert not verdict.passed and "ids [1] at positions [1]" in verdict.detail


def test_scored_threshold_is_configurable() -> None:
    partly = answer("the capital is Paris")  # 3 of 5 reference tokens, precision 1: F1 0.75
    assert not Assertion("token-f1", "capital of France is Paris", threshold=0.8).evaluate(partly, CONTEXT).passed
    assert Assertion("token-f1", "capital of France is Paris", threshold=0.7).evaluate(partly, CONTEXT).passed


def test_quality_scores_by_hand() -> None:
    assert quality.normalize("The Capital, of France!") == "capital of france"
    assert quality.token_f1("the capital is Paris", "capital of France is Paris") == pytest.approx(0.75)
    # LCS of [capital france is paris] and [capital of france is paris] is all 4: P 4/4, R 4/5
    assert quality.rouge_l("capital France is Paris", "capital of France is Paris") == pytest.approx(8 / 9)
    assert quality.rouge_l("Paris is France capital", "capital of France is Paris") == pytest.approx(2 / 9)
    assert quality.keyword_recall("Paris, France", ["paris", "Rome"]) == 0.5
    assert quality.exact_match("Paris.", "paris") == 1.0


def test_schema_lists_exactly_the_implemented_types() -> None:
    pattern = _schema()["$defs"]["assertion"]["properties"]["type"]["pattern"]
    listed = set(re.search(r"\)\?\((.*)\)\$", pattern).group(1).split("|"))  # type: ignore[union-attr]
    assert listed == set(CHECKS)


@pytest.mark.parametrize(("generation", "problem"), [
    (answer("caf\ufffd"), "U+FFFD"),
    (answer("bad \udc80 byte"), "not valid UTF-8"),
    (answer("<|im_start|>user"), "contains '<|im_start|>'"),
    (answer("ok", (10, 11), stop="eos"), "is not an eos id"),
    (answer("ok", (10, 11), stop="length"), "below the budget"),
    (answer("ok", (10, EOS, 11, EOS)), "ids [2] at positions [1]"),
], ids=["replacement-char", "lone-surrogate", "leaked-text", "eos-without-eos", "length-too-early", "past-eos"])
def test_format_problems_catch_each_defect(generation: Generation, problem: str) -> None:
    problems = format_problems(generation, SearchOptions(max_new_tokens=8), CONTEXT)
    assert any(problem in p for p in problems), problems


def test_well_formed_answers_have_no_format_problems() -> None:
    options = SearchOptions(max_new_tokens=3)
    assert format_problems(answer("Paris."), options, CONTEXT) == []
    assert format_problems(answer("Par", (10, 11, 12), stop="length"), options, CONTEXT) == []
    full_context = answer("P", (10,), stop="length", prompt=63)  # the context ran out before the budget
    assert format_problems(full_context, options, CONTEXT) == []


def test_a_character_cut_by_the_budget_is_not_a_decoding_problem() -> None:
    """The last byte tokens of a multi-byte character fell beyond max_new_tokens: only a trailing U+FFFD."""
    options = SearchOptions(max_new_tokens=3)
    assert format_problems(answer("Ⅲ\ufffd", (10, 11, 12), stop="length"), options, CONTEXT) == []
    inside = format_problems(answer("\ufffdⅢ", (10, 11, 12), stop="length"), options, CONTEXT)
    assert any("U+FFFD" in p for p in inside), inside
    ended = format_problems(answer("Ⅲ\ufffd", (10, 11, EOS), stop="eos"), options, CONTEXT)  # not cut: a defect
    assert any("U+FFFD" in p for p in ended), ended


def test_stop_facts_and_token_problems_share_the_stop_rule() -> None:
    facts = StopFacts.of((5, 2, 6, 2), (2,))
    assert facts == StopFacts(ends_on_eos=True, eos_inside=(1,)) and facts.agrees("eos") and not facts.agrees("length")
    assert StopFacts.of((), (2,)) == StopFacts(False, ())
    assert token_problems((5, 6, 2), "eos", (2,), 8) == []
    assert token_problems((5, 2, 6), "eos", (2,), 2) == [
        "3 output tokens where at most 2 were asked for", "eos token inside the answer at positions [1]",
        "stop reason 'eos' but the last token [6] is not an eos id [2]"]
    assert token_problems((), "length", (2,), 8) == ["no output token"]


def test_a_catastrophic_regex_times_out_instead_of_hanging() -> None:
    long_answer = answer("a" * 60)
    started = time.perf_counter()
    result = Assertion("regex", "(a|aa)+b").evaluate(long_answer, CONTEXT)  # 2**60 ways to fail under `re`
    assert time.perf_counter() - started < 5 * REGEX_TIMEOUT_S
    assert not result.passed and "catastrophic backtracking" in result.detail
