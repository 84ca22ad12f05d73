"""The outcome of a timing change from the interval of its worsening: regression, within, or inconclusive.

One rule for every timing verdict, between two runs (``harness.report.compare``) and within one (A/B,
``harness.checks.ab``): a *regression* when the whole 95% interval is worse than the threshold, *within* when none
of it is, an *improvement* when all of it is better by more than the threshold, and *inconclusive* when it
straddles the threshold. A change whose interval includes no change is never "unchanged".
"""

from __future__ import annotations

import math
from typing import Literal

Change = Literal["regression", "improvement", "within", "inconclusive"]
VERDICTS: tuple[Change, ...] = ("regression", "inconclusive", "improvement", "within")  # worst first
RATES = frozenset({"prefill_tokens_per_s", "decode_tokens_per_s"})
HIGHER_IS_BETTER = RATES | {"top1_agreement", "case_score"}


def worsening(change: float, metric: str) -> float:
    """A relative change ((new - old) / old) as the worsening it is (positive: worse). A rate's change is judged
    as the time it implies (old / new - 1): 20% fewer tokens/s is 25% more time per token, so tokens/s and the
    time per token give one verdict on one measurement."""
    if metric in RATES:
        return math.inf if change <= -1 else 1 / (1 + change) - 1
    return -change if metric in HIGHER_IS_BETTER else change


def worsening_interval(change: tuple[float, float], metric: str) -> tuple[float, float]:
    """An interval of a relative change as an interval of worsening (see ``worsening``)."""
    low, high = sorted(worsening(bound, metric) for bound in change)
    return low, high


def timing_verdict(worse: tuple[float, float], threshold: float) -> tuple[Change, str]:
    """The outcome of a timing change from the 95% interval of its worsening (a fraction of the baseline)."""
    low, high = worse
    if low > threshold:
        return "regression", f"{low:.1%} to {high:.1%} worse: beyond the {threshold:.0%} limit"
    if high < -threshold:
        return "improvement", f"{-high:.1%} to {-low:.1%} better"
    if high <= threshold:
        return "within", f"at most {max(high, 0.0):.1%} worse: within the {threshold:.0%} limit"
    return "inconclusive", (f"{low:.1%} to {high:.1%} worse: the interval straddles the {threshold:.0%} limit "
                            "(more rounds, a quieter machine, or --harness-ab decide it)")
