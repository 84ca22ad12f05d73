"""Declarative cases (fixtures/cases or --cases): each case is a test; every answer is also
checked for form (clean UTF-8, no leaked control tokens, honest stop, stream = generate,
determinism); golden answers are scored and gated on their means.

Greedy answers are judged on every compute path (the model as built and, when its kernels depend on
the CPU, its fp32-compute twin): a verdict the paths disagree on is reported as unstable.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness import (
    NO_CHAT_TEMPLATE,
    AnswerContext,
    Case,
    CaseSet,
    ComputePaths,
    Gates,
    Generation,
    RecordAnswer,
    Runtime,
    Settle,
    answer_context,
    case_verdict,
    format_verdict,
    quality_verdict,
    repeat_failure,
)

PathAnswers = tuple[tuple[Generation, ...], ...]  # per compute path, the case's answers (one per repeat)
Answers = Callable[[Case], PathAnswers]


@pytest.fixture(scope="module")
def answers(harness_paths: ComputePaths) -> Answers:
    """Each case's answers on each compute path that judges it, generated once for all the checks here."""

    done: dict[str, PathAnswers] = {}

    def generate(case: Case) -> PathAnswers:
        if case.id not in done:
            repeats = case.sample_options()
            done[case.id] = tuple(tuple(path.runtime.generate(case.prompt, options) for options in repeats)
                                  for path in harness_paths.for_options(case.options))
        return done[case.id]

    return generate


@pytest.fixture(scope="module")
def context(harness_runtime: Runtime) -> AnswerContext:
    return answer_context(harness_runtime)


@pytest.mark.harness_cases(with_assertions=True)
def test_case(harness_case: Case, answers: Answers, context: AnswerContext, harness_paths: ComputePaths,
              harness_verdict: Settle, record_property: Callable[[str, object], None],
              harness_answer: RecordAnswer) -> None:
    case = harness_case
    per_path = answers(case)
    for answer in per_path[0]:  # the model as built: each sample
        harness_answer(case.prompt, answer)
    built = [case.judge(answer, context)[0] for answer in per_path[0]]
    record_property("case_score", sum(built) / len(built))
    record_property("case_pass_rate", sum(score >= case.threshold for score in built) / len(built))
    harness_verdict(case_verdict(case, harness_paths, per_path, context))


def test_output_format(harness_case: Case, answers: Answers, context: AnswerContext, harness_runtime: Runtime,
                       harness_paths: ComputePaths, harness_verdict: Settle, harness_answer: RecordAnswer) -> None:
    """Form checks on every answer of every path; greedy answers must also repeat exactly and stream identically."""
    case = harness_case
    first = answers(case)[0][0]
    harness_answer(case.prompt, first)
    if case.greedy:  # properties of the runtime, not of a near-tie: judged on the model as built
        failure = repeat_failure(harness_runtime, case, first)
        assert failure is None, failure
    harness_verdict(format_verdict(case, harness_paths, answers(case), context))


def test_domain_quality(harness_cases: CaseSet, answers: Answers, harness_gates: Gates,
                        harness_paths: ComputePaths, harness_verdict: Settle,
                        record_property: Callable[[str, object], None], harness_answer: RecordAnswer) -> None:
    """Golden answers: mean token F1, ROUGE-L and keyword recall must reach their gates on every compute path."""
    golden = [c for c in harness_cases.cases if c.reference is not None]
    if not golden:
        pytest.skip("no case has a reference answer; add 'reference' to cases to score domain quality")
    if harness_paths.primary.info.chat_template is None:  # a base model: only raw-prompt golden cases
        golden = [c for c in golden if isinstance(c.prompt, str)]
        if not golden:
            pytest.skip(NO_CHAT_TEMPLATE)
    quality = quality_verdict(golden, harness_paths, [answers(case) for case in golden], harness_gates)
    for name, mean in quality.means.items():
        record_property(f"quality_{name}", mean)
    for case, answer in zip(golden, quality.answers, strict=True):
        harness_answer(case.prompt, answer)
    harness_verdict(quality.verdict)
