"""Declarative cases (fixtures/cases or --cases): each case is a test; every answer is also
checked for form (clean UTF-8, no leaked control tokens, honest stop, stream = generate,
determinism); golden answers are scored and gated on their means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from harness.assertions import AnswerContext
from harness.cases import Case
from harness.gates import Gates
from harness.output_format import answer_context, format_problems
from harness.plugin import configured_cases
from harness.quality import QualityScores, gate_failures, mean_scores
from harness.runtime import Generation, Runtime
from harness.templates import first_difference

Answers = Callable[[Case], Sequence[Generation]]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    cases = configured_cases(metafunc.config).cases
    if "case" in metafunc.fixturenames:  # every case
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])
    if "asserted_case" in metafunc.fixturenames:  # the cases with assertions
        asserted = [c for c in cases if c.assertions]
        metafunc.parametrize("asserted_case", asserted, ids=[c.id for c in asserted])


@pytest.fixture(scope="module")
def answers(runtime: Runtime) -> Answers:
    """Each case's answers (``repeat`` of them), generated once for all the checks of this module."""

    done: dict[str, tuple[Generation, ...]] = {}

    def generate(case: Case) -> tuple[Generation, ...]:
        if case.id not in done:
            done[case.id] = tuple(runtime.generate(case.prompt, options) for options in case.sample_options())
        return done[case.id]

    return generate


@pytest.fixture(scope="module")
def context(runtime: Runtime) -> AnswerContext:
    return answer_context(runtime)


def _clip(text: str, limit: int = 300) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def test_case(asserted_case: Case, answers: Answers, context: AnswerContext,
              record_property: Callable[[str, object], None]) -> None:
    case = asserted_case
    judged = [case.judge(answer, context) for answer in answers(case)]
    passed = [score >= case.threshold for score, _ in judged]
    rate = sum(passed) / len(passed)
    record_property("case_score", sum(score for score, _ in judged) / len(judged))
    record_property("case_pass_rate", rate)
    if rate >= case.pass_rate:
        return
    worst = min(range(len(judged)), key=lambda i: judged[i][0])
    score, lines = judged[worst]
    sampled = f"{sum(passed)} of {case.repeat} samples passed (need {case.pass_rate:.0%}); worst sample:\n" \
        if case.repeat > 1 else ""
    pytest.fail(
        f"case {case.id!r} ({case.origin}) failed: score {score:.2f} below its threshold {case.threshold:.2f}\n"
        f"{sampled}  prompt: {_clip(case.prompt_text())}\n  answer: {_clip(answers(case)[worst].text)}\n"
        + "\n".join(lines), pytrace=False)


def test_output_format(case: Case, answers: Answers, context: AnswerContext, runtime: Runtime) -> None:
    """Form checks on every answer; greedy answers must also repeat exactly and stream identically."""
    problems = [f"sample {i + 1}: {p}" if case.repeat > 1 else p
                for i, answer in enumerate(answers(case)) for p in format_problems(answer, case.options, context)]
    if case.greedy:
        first = answers(case)[0]
        again = runtime.generate(case.prompt, case.options)
        if again.token_ids != first.token_ids:
            problems.append(f"greedy decoding is not deterministic: a second run differs from token "
                            f"{first_difference(first.token_ids, again.token_ids)} "
                            f"({_clip(first.text, 80)} vs {_clip(again.text, 80)})")
        streamed = "".join(runtime.stream(case.prompt, case.options))
        if streamed != first.text:
            problems.append(f"streamed text differs from the generated text: {_clip(streamed, 80)} vs "
                            f"{_clip(first.text, 80)}")
    assert not problems, f"case {case.id!r} ({case.origin}): answer {_clip(answers(case)[0].text)}:\n  " + \
        "\n  ".join(problems)


def test_domain_quality(pytestconfig: pytest.Config, answers: Answers, harness_gates: Gates,
                        record_property: Callable[[str, object], None]) -> None:
    """Golden answers: mean token F1, ROUGE-L and keyword recall must reach their gates."""
    golden = [c for c in configured_cases(pytestconfig).cases if c.reference is not None]
    if not golden:
        pytest.skip("no case has a reference answer; add 'reference' to cases to score domain quality")
    scored = [(case, QualityScores.of(answers(case)[0].text, case.reference or "", case.keywords))
              for case in golden]
    means = mean_scores([s for _, s in scored])
    for name, mean in means.items():
        record_property(f"quality_{name}", mean)
    failures = gate_failures(means, harness_gates, len(scored))
    if failures:
        table = "\n".join(
            f"  {case.id} ({case.origin}): F1 {s.token_f1:.2f}, ROUGE-L {s.rouge_l:.2f}, keywords "
            f"{'-' if s.keyword_recall is None else f'{s.keyword_recall:.2f}'}\n"
            f"    prompt:   {_clip(case.prompt_text(), 120)}\n    expected: {_clip(case.reference or '', 120)}\n"
            f"    actual:   {_clip(answers(case)[0].text, 120)}"
            for case, s in sorted(scored, key=lambda pair: pair[1].token_f1))
        pytest.fail("domain quality below its gates: " + "; ".join(failures) + "\n" + table, pytrace=False)
