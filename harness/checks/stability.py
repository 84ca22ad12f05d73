"""Verdicts that do not depend on the CPU: a greedy answer judged on every compute path.

A greedy check judges the answer of the model as built and, when that model's kernels depend on the
CPU (see ``harness.preparation.compute_paths``), the answer of its fp32-compute twin. The verdict is **passed**
when every path passes, **failed** when every path fails, and **unstable** when they disagree: the
verdict then hangs on a near-tie between two tokens, which another CPU may break the other way.

Every greedy answer carries, per token, the lead of the chosen token's logit over the runner-up's
(its *margin*); a failure names the answer's weakest decisions, an unstable verdict the token where
the paths part and the margins there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from harness.properties import UNSTABLE, SoftVerdict
from harness.text import clip, first_difference

if TYPE_CHECKING:
    from harness.runtime.protocol import Generation, Prompt, Runtime, SearchOptions

WEAKEST_SHOWN = 3
ANSWER_SHOWN = 200  # characters of an answer in a message


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    UNSTABLE = UNSTABLE


class UnstableVerdict(SoftVerdict):
    """Raised by a check whose compute paths disagree; the plugin reports it per ``--unstable``."""

    outcome = UNSTABLE


@dataclass(frozen=True)
class ComputePath:
    label: str  # e.g. "as built (accuracy_level 4)"
    runtime: Runtime


@dataclass(frozen=True)
class ComputePaths:
    """The runtimes greedy answers are judged on: the model as built first, then its fp32-compute twin
    when the built model's kernels depend on the CPU (otherwise the model alone)."""

    paths: tuple[ComputePath, ...]
    without_twin: str | None = None  # why the fp32-compute twin is not among them though the model has one

    @property
    def primary(self) -> Runtime:
        return self.paths[0].runtime

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(path.label for path in self.paths)

    def for_options(self, options: SearchOptions) -> tuple[ComputePath, ...]:
        """Every path for greedy decoding; sampled answers are judged statistically, on the built model only."""
        return self.paths if not options.do_sample else self.paths[:1]

    def generate(self, prompt: Prompt, options: SearchOptions) -> tuple[Generation, ...]:
        """One answer per path that judges ``options`` (see ``for_options``)."""
        return tuple(path.runtime.generate(prompt, options) for path in self.for_options(options))


@dataclass(frozen=True)
class PathJudgement:
    label: str
    passed: bool
    detail: str  # the failure text of this path ("" when it passed)
    answers: tuple[Generation, ...]  # what was judged, aligned item by item across the paths


@dataclass(frozen=True)
class PathVerdict:
    judgements: tuple[PathJudgement, ...]

    @property
    def outcome(self) -> Outcome:
        passed = {judgement.passed for judgement in self.judgements}
        if passed == {True}:
            return Outcome.PASSED
        return Outcome.FAILED if passed == {False} else Outcome.UNSTABLE

    def explain(self, decode: Callable[[Sequence[int]], str]) -> str:
        """The message of a failed or unstable verdict ("" when it passed)."""
        outcome, first = self.outcome, self.judgements[0]
        if outcome is Outcome.PASSED:
            return ""
        if outcome is Outcome.FAILED:
            lines = [first.detail, *_weakest_lines(first.answers, decode)]
            for other in self.judgements[1:]:
                same = [a.token_ids for a in other.answers] == [a.token_ids for a in first.answers]
                lines.append(f"  fails on the {other.label} path too"
                             + (", with the same answer" if same else f": {_answers(other.answers)}"))
            return "\n".join(lines)
        passing = [j.label for j in self.judgements if j.passed]
        failing = [j for j in self.judgements if not j.passed]
        lines = [f"UNSTABLE: passes on {' and '.join(passing)}, fails on {' and '.join(j.label for j in failing)}; "
                 "the verdict hangs on a near-tie that another CPU may break either way",
                 *divergence_lines(self.judgements[0], self.judgements[1], decode)]
        for judgement in self.judgements:
            lines.append(f"  {judgement.label}: {_answers(judgement.answers)}")
        for judgement in failing:
            lines.append(f"  why it fails on {judgement.label}:")
            lines += ["  " + line for line in judgement.detail.splitlines()]
        return "\n".join(lines)


def _answers(answers: Sequence[Generation]) -> str:
    return " | ".join(repr(clip(answer.text, ANSWER_SHOWN)) for answer in answers)


def _token(decode: Callable[[Sequence[int]], str], token: int) -> str:
    return repr(decode([token]))


def weakest_decisions(answer: Generation, decode: Callable[[Sequence[int]], str],
                      count: int = WEAKEST_SHOWN) -> list[str]:
    """The answer's closest calls, weakest first: 'token 18: ' and' over ' culture' by 0.004'."""
    if not answer.margins:
        return []
    order = sorted(range(len(answer.margins)), key=lambda i: answer.margins[i])[:count]
    return [f"token {i}: {_token(decode, answer.token_ids[i])} over {_token(decode, answer.runner_up_ids[i])} "
            f"by {answer.margins[i]:.3f}" for i in order]


def _weakest_lines(answers: Sequence[Generation], decode: Callable[[Sequence[int]], str]) -> list[str]:
    lines = []
    for index, answer in enumerate(answers):
        weakest = weakest_decisions(answer, decode)
        if weakest:
            which = f" of answer {index + 1}" if len(answers) > 1 else ""
            lines.append(f"  weakest decisions{which} (logit lead over the runner-up): {'; '.join(weakest)}")
    return lines


def divergence_lines(a: PathJudgement, b: PathJudgement, decode: Callable[[Sequence[int]], str]) -> list[str]:
    """Where two paths' answers part: the first differing answer, the token, and each path's margin there."""
    for index, (left, right) in enumerate(zip(a.answers, b.answers, strict=False)):
        if left.token_ids == right.token_ids:
            continue
        position = first_difference(left.token_ids, right.token_ids)
        which = f"answer {index + 1}'s " if len(a.answers) > 1 else "the answers part at "
        parts = [f"{label} chose {_choice(answer, position, decode)}"
                 for label, answer in ((a.label, left), (b.label, right))]
        return [f"  {which}token {position}: {'; '.join(parts)}"]
    return ["  the answers are identical token for token; the paths differ in something else the check reads"]


def _choice(answer: Generation, position: int, decode: Callable[[Sequence[int]], str]) -> str:
    if position >= len(answer.token_ids):
        return "to stop (no token)"
    chosen = _token(decode, answer.token_ids[position])
    if position < len(answer.margins):
        return f"{chosen} over {_token(decode, answer.runner_up_ids[position])} by {answer.margins[position]:.3f}"
    return chosen


def minimum_margin(answers: Sequence[Generation]) -> float | None:
    margins = [m for answer in answers for m in answer.margins]
    return min(margins) if margins else None
