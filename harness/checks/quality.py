"""Text scores of an answer against a golden reference, and the gates on their means.

Normalization follows SQuAD's evaluation (lowercase, drop punctuation and articles, squeeze
spaces) so "The capital is Rome." and "capital is rome" score as a match.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from harness.config.gates import Gate, Gates

# Defaults from the shipped golden answers (6 cases) on the default model, greedy, measured with
# `pytest suites/test_cases.py -k quality --precision=int4` (and fp32): token F1 0.83 (int4) / 0.91 (fp32),
# ROUGE-L 0.80 / 0.88, keyword recall 1.00 / 1.00; a degraded int4 build (block size 256) 0.33, 0.33, 0.25.
GATES: tuple[Gate, ...] = (
    Gate("quality_token_f1_min", 0.5, "min", "", "mean token F1 of answers vs reference answers "
         "(measured 0.88 int4, 0.83 degraded int4, 0.26 wrong eos id)", "[0, 1]"),
    Gate("quality_rouge_l_min", 0.5, "min", "", "mean ROUGE-L of answers vs reference answers "
         "(measured 0.88 int4, 0.83 degraded int4, 0.26 wrong eos id)", "[0, 1]"),
    Gate("quality_keyword_recall_min", 0.9, "min", "", "mean share of a case's keywords in its answer "
         "(measured 1.0 int4, 0.50 degraded int4)", "[0, 1]"),
)
GATED_SCORES = {"token_f1": "quality_token_f1_min", "rouge_l": "quality_rouge_l_min",
                "keyword_recall": "quality_keyword_recall_min"}

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def exact_match(answer: str, reference: str) -> float:
    return float(normalize(answer) == normalize(reference))


def token_f1(answer: str, reference: str) -> float:
    """Harmonic mean of token precision and recall (bag of words, SQuAD style)."""
    got, want = tokens(answer), tokens(reference)
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure: longest common subsequence of tokens, balanced precision and recall."""
    got, want = tokens(answer), tokens(reference)
    if not got or not want:
        return float(got == want)
    lcs = _lcs_length(got, want)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(got), lcs / len(want)
    return 2 * precision * recall / (precision + recall)


def keyword_recall(answer: str, keywords: Sequence[str]) -> float:
    """Share of keywords present in the answer (case-insensitive substring)."""
    if not keywords:
        return 1.0
    lowered = answer.lower()
    return sum(keyword.lower() in lowered for keyword in keywords) / len(keywords)


@dataclass(frozen=True)
class QualityScores:
    exact_match: float
    token_f1: float
    rouge_l: float
    keyword_recall: float | None  # None when the case lists no keywords

    @classmethod
    def of(cls, answer: str, reference: str, keywords: Sequence[str]) -> QualityScores:
        return cls(exact_match(answer, reference), token_f1(answer, reference), rouge_l(answer, reference),
                   keyword_recall(answer, keywords) if keywords else None)

    def as_dict(self) -> dict[str, float | None]:
        return {"exact_match": self.exact_match, "token_f1": self.token_f1, "rouge_l": self.rouge_l,
                "keyword_recall": self.keyword_recall}


def mean_scores(scored: Sequence[QualityScores]) -> dict[str, float]:
    """Mean of each score over the cases that have it (keyword recall only where keywords are given)."""
    means: dict[str, float] = {}
    for name in ("exact_match", "token_f1", "rouge_l", "keyword_recall"):
        values = [value for s in scored if (value := s.as_dict()[name]) is not None]
        if values:
            means[name] = sum(values) / len(values)
    return means


def gate_failures(means: dict[str, float], gates: Gates, cases: int) -> list[str]:
    return [f"mean {name} {means[name]:.2f} over {cases} cases, gate {gates.describe(gate)}"
            for name, gate in GATED_SCORES.items() if name in means and not gates.check(gate, means[name])]
