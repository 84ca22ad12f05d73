"""Declarative cases (fixtures/cases or --cases): each case is a test; every answer is also
checked for form (clean UTF-8, no leaked control tokens, honest stop, stream = generate,
determinism); golden answers are scored and gated on their means.

Greedy answers are judged on every compute path (the model as built and, when its kernels depend on
the CPU, its fp32-compute twin): a verdict the paths disagree on is reported as unstable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from harness import (
    Case,
    CaseSet,
    ComputePaths,
    Gates,
    Generation,
    PathJudgement,
    PathVerdict,
    RecordAnswer,
    Runtime,
    Settle,
    rendered_prompt,
)
from harness.checks.assertions import AnswerContext
from harness.checks.output_format import answer_context, format_problems
from harness.checks.quality import QualityScores, gate_failures, mean_scores
from harness.plugin import NO_CHAT_TEMPLATE
from harness.text import clip, clip_middle, first_difference

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


def _judge_case(case: Case, label: str, answers: Sequence[Generation], context: AnswerContext,
                read: str) -> PathJudgement:
    """The case's verdict on one compute path; ``read`` is the prompt as the model read it."""
    judged = [case.judge(answer, context) for answer in answers]
    passed = [score >= case.threshold for score, _ in judged]
    if sum(passed) / len(passed) >= case.pass_rate:
        return PathJudgement(label, True, "", tuple(answers))
    worst = min(range(len(judged)), key=lambda i: judged[i][0])
    score, lines = judged[worst]
    sampled = f"{sum(passed)} of {case.repeat} samples passed (need {case.pass_rate:.0%}); worst sample:\n" \
        if case.repeat > 1 else ""
    detail = (f"case {case.id!r} ({case.origin}) failed: score {score:.2f} below its threshold {case.threshold:.2f}\n"
              f"{sampled}  prompt: {clip_middle(read, 400)!r}\n  answer: {clip(answers[worst].text, 300)!r}\n"
              + "\n".join(lines))
    return PathJudgement(label, False, detail, tuple(answers))


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
    paths = harness_paths.for_options(case.options)
    read = rendered_prompt(harness_paths.primary, case.prompt)
    harness_verdict(PathVerdict(tuple(_judge_case(case, path.label, path_answers, context, read)
                                      for path, path_answers in zip(paths, per_path, strict=True))))


def test_output_format(harness_case: Case, answers: Answers, context: AnswerContext, harness_runtime: Runtime,
                       harness_paths: ComputePaths, harness_verdict: Settle, harness_answer: RecordAnswer) -> None:
    """Form checks on every answer of every path; greedy answers must also repeat exactly and stream identically."""
    case = harness_case
    first = answers(case)[0][0]
    harness_answer(case.prompt, first)
    if case.greedy:  # properties of the runtime, not of a near-tie: judged on the model as built
        again = harness_runtime.generate(case.prompt, case.options)
        problems = []
        if again.token_ids != first.token_ids:
            problems.append(f"greedy decoding is not deterministic: a second run differs from token "
                            f"{first_difference(first.token_ids, again.token_ids)} "
                            f"({clip(first.text, 80)!r} vs {clip(again.text, 80)!r})")
        streamed = "".join(harness_runtime.stream(case.prompt, case.options))
        if streamed != first.text:
            problems.append(f"streamed text differs from the generated text: {clip(streamed, 80)!r} vs "
                            f"{clip(first.text, 80)!r}")
        assert not problems, f"case {case.id!r} ({case.origin}): answer {clip(first.text, 300)!r}:\n  " + \
            "\n  ".join(problems)
    judgements = []
    for path, path_answers in zip(harness_paths.for_options(case.options), answers(case), strict=True):
        problems = [f"sample {i + 1}: {p}" if case.repeat > 1 else p
                    for i, answer in enumerate(path_answers) for p in format_problems(answer, case.options, context)]
        detail = (f"case {case.id!r} ({case.origin}): answer {clip(path_answers[0].text, 300)!r}:\n  "
                  + "\n  ".join(problems))
        judgements.append(PathJudgement(path.label, not problems, detail if problems else "", path_answers))
    harness_verdict(PathVerdict(tuple(judgements)))


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
    judgements = []
    for index, path in enumerate(harness_paths.paths):
        # A sampled golden case is judged on the model as built only: its answer counts on every path.
        chosen = [answers(case)[index if index < len(answers(case)) else 0][0] for case in golden]
        scored = [QualityScores.of(answer.text, case.reference or "", case.keywords)
                  for case, answer in zip(golden, chosen, strict=True)]
        means = mean_scores(scored)
        if index == 0:
            for name, mean in means.items():
                record_property(f"quality_{name}", mean)
            for case, answer in zip(golden, chosen, strict=True):
                harness_answer(case.prompt, answer)
        failures = gate_failures(means, harness_gates, len(scored))
        ranked = sorted(zip(golden, scored, chosen, strict=True), key=lambda item: item[1].token_f1)
        table = "\n".join(
            f"  {case.id} ({case.origin}): F1 {s.token_f1:.2f}, ROUGE-L {s.rouge_l:.2f}, keywords "
            f"{'-' if s.keyword_recall is None else f'{s.keyword_recall:.2f}'}\n"
            f"    prompt:   {clip(case.prompt_text(), 120)!r}\n    expected: {clip(case.reference or '', 120)!r}\n"
            f"    actual:   {clip(answer.text, 120)!r}"
            for case, s, answer in ranked)
        detail = "domain quality below its gates: " + "; ".join(failures) + "\n" + table if failures else ""
        judgements.append(PathJudgement(path.label, not failures, detail, tuple(chosen)))
    harness_verdict(PathVerdict(tuple(judgements)))
