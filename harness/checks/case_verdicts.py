"""The cases suite's verdicts on every compute path: a case's assertions, the form of its answers, and the domain
quality of the golden answers (``suites/test_cases.py`` states what is checked; the judging is here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.checks.assertions import AnswerContext
from harness.checks.cases import Case
from harness.checks.output_format import format_problems
from harness.checks.quality import QualityScores, gate_failures, mean_scores
from harness.checks.stability import ComputePaths, PathJudgement, PathVerdict
from harness.config.gates import Gates
from harness.runtime.protocol import Generation, Runtime, rendered_prompt
from harness.text import clip, clip_middle, first_difference

PathAnswers = tuple[tuple[Generation, ...], ...]  # per compute path, the case's answers (one per repeat)


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


def case_verdict(case: Case, paths: ComputePaths, per_path: PathAnswers, context: AnswerContext) -> PathVerdict:
    """A case's verdict on each compute path that judges it (``per_path``: its answers there, one per repeat): enough
    samples must reach the case's threshold, or the path fails with the prompt as the model read it, the worst answer
    and each assertion's outcome."""
    judged_paths = paths.for_options(case.options)
    read = rendered_prompt(paths.primary, case.prompt)
    return PathVerdict(tuple(_judge_case(case, path.label, path_answers, context, read)
                             for path, path_answers in zip(judged_paths, per_path, strict=True)))


def repeat_failure(runtime: Runtime, case: Case, first: Generation) -> str | None:
    """A greedy case answered again on ``runtime``: None when the second run repeats ``first`` token for token and the
    stream spells the same text, else the failure message."""
    again = runtime.generate(case.prompt, case.options)
    problems = []
    if again.token_ids != first.token_ids:
        problems.append(f"greedy decoding is not deterministic: a second run differs from token "
                        f"{first_difference(first.token_ids, again.token_ids)} "
                        f"({clip(first.text, 80)!r} vs {clip(again.text, 80)!r})")
    streamed = "".join(runtime.stream(case.prompt, case.options))
    if streamed != first.text:
        problems.append(f"streamed text differs from the generated text: {clip(streamed, 80)!r} vs "
                        f"{clip(first.text, 80)!r}")
    if not problems:
        return None
    return f"case {case.id!r} ({case.origin}): answer {clip(first.text, 300)!r}:\n  " + "\n  ".join(problems)


def format_verdict(case: Case, paths: ComputePaths, per_path: PathAnswers, context: AnswerContext) -> PathVerdict:
    """The form checks (``format_problems``) on every answer of the case on each compute path that judges it."""
    judgements = []
    for path, path_answers in zip(paths.for_options(case.options), per_path, strict=True):
        problems = [f"sample {i + 1}: {p}" if case.repeat > 1 else p
                    for i, answer in enumerate(path_answers) for p in format_problems(answer, case.options, context)]
        detail = (f"case {case.id!r} ({case.origin}): answer {clip(path_answers[0].text, 300)!r}:\n  "
                  + "\n  ".join(problems))
        judgements.append(PathJudgement(path.label, not problems, detail if problems else "", path_answers))
    return PathVerdict(tuple(judgements))


@dataclass(frozen=True)
class QualityVerdict:
    means: dict[str, float]  # each mean score on the model as built
    answers: tuple[Generation, ...]  # the golden cases' answers on the model as built, case by case
    verdict: PathVerdict


def quality_verdict(golden: Sequence[Case], paths: ComputePaths, per_case: Sequence[PathAnswers],
                    gates: Gates) -> QualityVerdict:
    """Domain quality on every compute path: the golden cases' mean token F1, ROUGE-L and keyword recall against the
    quality gates (``per_case``: each case's answers per path); a failure lists every case, worst F1 first."""
    judgements = []
    means: dict[str, float] = {}
    built: list[Generation] = []
    for index, path in enumerate(paths.paths):
        # A sampled golden case is judged on the model as built only: its answer counts on every path.
        chosen = [answers[index if index < len(answers) else 0][0] for answers in per_case]
        scored = [QualityScores.of(answer.text, case.reference or "", case.keywords)
                  for case, answer in zip(golden, chosen, strict=True)]
        path_means = mean_scores(scored)
        if index == 0:
            means, built = path_means, chosen
        failures = gate_failures(path_means, gates, len(scored))
        ranked = sorted(zip(golden, scored, chosen, strict=True), key=lambda item: item[1].token_f1)
        table = "\n".join(
            f"  {case.id} ({case.origin}): F1 {s.token_f1:.2f}, ROUGE-L {s.rouge_l:.2f}, keywords "
            f"{'-' if s.keyword_recall is None else f'{s.keyword_recall:.2f}'}\n"
            f"    prompt:   {clip(case.prompt_text(), 120)!r}\n    expected: {clip(case.reference or '', 120)!r}\n"
            f"    actual:   {clip(answer.text, 120)!r}"
            for case, s, answer in ranked)
        detail = "domain quality below its gates: " + "; ".join(failures) + "\n" + table if failures else ""
        judgements.append(PathJudgement(path.label, not failures, detail, tuple(chosen)))
    return QualityVerdict(means, tuple(built), PathVerdict(tuple(judgements)))
