"""How much of a fine-tune the built model keeps: each metric on the base model, the fine-tuned reference (fp32) and
the built model, and retention = (built - base) / (reference - base).

1 means the built model kept all the fine-tune gained over its base, 0 that quantization erased it. The metrics:
the eval texts' mean log-likelihood per token (your domain's with ``--eval-texts``), and the greedy cases' pass share
and mean score. The base's and the reference's answers are their greedy answers computed with the parity reference
(transformers, in a child process, cached); the built model answers with the runtime. A metric the fine-tune did
not move (its gain below ``MIN_GAIN``) has nothing to retain: it is reported, not gated.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from harness.checks.assertions import AnswerContext
from harness.checks.cases import Case
from harness.checks.output_format import answer_context
from harness.checks.parity import ParityReport, ReferenceData, ReferenceItem
from harness.checks.reference import CASE_PREFIX
from harness.checks.stability import ComputePaths, PathJudgement, PathVerdict
from harness.config.gates import Gate, Gates
from harness.runtime.protocol import Generation, Runtime

GATES: tuple[Gate, ...] = (
    Gate("finetune_retention_min", 0.9, "min", "",
         "share of the fine-tune's gain over its base model that the built model keeps, (built - base) / "
         "(reference - base), per metric (eval-text log-likelihood, case pass share, mean case score); measured on "
         "the worked example (examples/fine-tune): int8 1.00, int4 1.00 to 1.04, int4 block 256 (degraded) 0.85 on "
         "the cases, the base's own build (erased) under 0.3; an earlier recipe whose int4 build flipped digits "
         "(212 g to 112 g) 0.72", "(-inf, inf)"),
)
# The least gain a metric must show for its retention to mean something: 0.05 nats per token of log-likelihood, one
# case in twenty, 0.05 of the mean score.
MIN_GAIN = {"log_likelihood": 0.05, "case_pass_share": 0.05, "case_score": 0.05}


@dataclass(frozen=True)
class Retention:
    metric: str
    base: float
    reference: float
    built: float

    @property
    def gain(self) -> float:
        return self.reference - self.base

    @property
    def measurable(self) -> bool:
        return self.gain >= MIN_GAIN[self.metric]

    @property
    def share(self) -> float:
        """(built - base) / (reference - base); NaN when the fine-tune gained nothing here."""
        return (self.built - self.base) / self.gain if self.gain else math.nan

    def line(self) -> str:
        kept = f"retention {self.share:.2f}" if self.measurable else \
            f"no gain to retain (below {MIN_GAIN[self.metric]})"
        return (f"{self.metric}: base {self.base:.3f}, fine-tuned reference {self.reference:.3f}, "
                f"built {self.built:.3f}: {kept}")


def failures(retentions: Sequence[Retention], gates: Gates) -> list[str]:
    gate = "finetune_retention_min"
    return [f"{r.line()}, gate {gates.describe(gate)}" for r in retentions
            if r.measurable and not gates.check(gate, r.share)]


def mean_log_likelihood(values: Sequence[np.ndarray]) -> float:
    """Mean log-probability per scored token, pooled over the items."""
    return float(np.concatenate([np.asarray(v, dtype=np.float64) for v in values]).mean())


def text_items(reference: ReferenceData) -> list[ReferenceItem]:
    return [item for item in reference.items if item.prompt_length is None]


def log_likelihood(base: ReferenceData, reference: ReferenceData, built_nll: Sequence[np.ndarray]) -> Retention:
    """The eval texts' mean log-likelihood per token: base and reference from their scores, the built model's from
    the parity suite's negative log-likelihoods of the same tokens."""
    return Retention("log_likelihood", mean_log_likelihood([i.target_log_probs for i in text_items(base)]),
                     mean_log_likelihood([i.target_log_probs for i in text_items(reference)]),
                     -mean_log_likelihood(built_nll))


def reference_answer(runtime: Runtime, data: ReferenceData, case: Case, limit: int) -> Generation:
    """The greedy answer the reference (or the base) gave to ``case``, cut at ``limit`` tokens, as a Generation the
    case's checks judge."""
    item = next((i for i in data.items if i.id == CASE_PREFIX + case.id and i.prompt_length is not None), None)
    if item is None or item.prompt_length is None:
        raise KeyError(f"the reference holds no answer to case {case.id!r}")
    tokens = item.token_ids[item.prompt_length:][:limit]
    eos = runtime.info.eos_token_ids
    return Generation(item.token_ids[:item.prompt_length], tokens, runtime.decode(tokens),
                      "eos" if tokens and tokens[-1] in eos else "length", 0.0, (), 0.0)


def case_metrics(cases: Sequence[Case], answers: Sequence[Generation], context: AnswerContext) -> tuple[float, float]:
    """(pass share, mean score) of greedy cases over one model's answers, one answer per case."""
    scores = [case.judge(answer, context)[0] for case, answer in zip(cases, answers, strict=True)]
    passed = [score >= case.threshold for case, score in zip(cases, scores, strict=True)]
    return sum(passed) / len(passed), sum(scores) / len(scores)


def case_retentions(cases: Sequence[Case], base: Sequence[Generation], reference: Sequence[Generation],
                    built: Sequence[Generation], context: AnswerContext) -> list[Retention]:
    per_model = [case_metrics(cases, answers, context) for answers in (base, reference, built)]
    return [Retention(name, *(metrics[index] for metrics in per_model))
            for index, name in enumerate(("case_pass_share", "case_score"))]


def text_retention(parity: ParityReport, base: ReferenceData, reference: ReferenceData) -> Retention:
    """The eval texts' mean log-likelihood per token retained: the built model's from the parity measurement
    (``parity``), the base's and the fine-tuned reference's from their scores."""
    built = [item.nll_candidate for item in parity.items if not item.is_prompt]
    return log_likelihood(base, reference, built)


def built_answers(runtime: Runtime, cases: Sequence[Case], limit: int) -> list[Generation]:
    """Each greedy case answered by ``runtime`` within the reference's token limit."""
    return [runtime.generate(case.prompt, dataclasses.replace(
        case.options, max_new_tokens=min(case.options.max_new_tokens, limit))) for case in cases]


def case_retention(runtime: Runtime, cases: Sequence[Case], base: ReferenceData,
                   reference: ReferenceData, built: Sequence[Generation] | None = None) -> list[Retention]:
    """The greedy ``cases``' pass share and mean score retained, each model answering greedily within the same token
    limit: the built model on ``runtime`` (or its answers ``built``), the base and the fine-tuned reference as their
    references recorded."""
    limit = reference.max_new_tokens
    built = built if built is not None else built_answers(runtime, cases, limit)
    base_answers, reference_answers = ([reference_answer(runtime, data, case, min(case.options.max_new_tokens, limit))
                                        for case in cases] for data in (base, reference))
    return case_retentions(cases, base_answers, reference_answers, built, answer_context(runtime))


def case_retention_verdict(paths: ComputePaths, cases: Sequence[Case], base: ReferenceData, reference: ReferenceData,
                           gates: Gates, record_property: Callable[[str, object], None],
                           finding: Callable[[str, str], None]) -> PathVerdict:
    """The cases' retention judged on every compute path (the model as built, and its fp32-compute twin where its
    kernels depend on the CPU): a case that a near-tie flips on one path makes the verdict unstable, not a coin toss.
    The built model's retentions are recorded (``report_retentions``)."""
    judgements = []
    for index, path in enumerate(paths.paths):
        answers = built_answers(path.runtime, cases, reference.max_new_tokens)
        retentions = case_retention(path.runtime, cases, base, reference, answers)
        if index == 0:
            failure = report_retentions(retentions, gates, record_property, finding)
        else:
            problems = failures(retentions, gates)
            failure = "the built model lost the fine-tune:\n  " + "\n  ".join(problems) if problems else None
        judgements.append(PathJudgement(path.label, failure is None, failure or "", tuple(answers)))
    return PathVerdict(tuple(judgements))


def report_retentions(retentions: Sequence[Retention], gates: Gates, record_property: Callable[[str, object], None],
                      finding: Callable[[str, str], None]) -> str | None:
    """Each retention recorded (a ``no-finetune-gain`` finding for a metric the fine-tune did not move); the failure
    message when one is below the ``finetune_retention_min`` gate, else None."""
    for retention in retentions:
        record_property(f"retention_{retention.metric}", vars(retention) | {"share": retention.share})
        if not retention.measurable:
            finding("no-finetune-gain", retention.line())
    problems = failures(retentions, gates)
    if problems:
        return "the built model lost the fine-tune:\n  " + "\n  ".join(problems)
    return None
