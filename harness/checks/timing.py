"""The outcome of a timing change from the interval of its worsening: regression, within, or inconclusive.

One rule for every timing verdict, between two runs (``harness.report.compare``) and within one (A/B,
``harness.checks.ab``): a *regression* when the whole 95% interval is worse than the threshold, *within* when none
of it is, an *improvement* when all of it is better by more than the threshold, and *inconclusive* when it
straddles the threshold. A change whose interval includes no change is never "unchanged".
"""

from __future__ import annotations

from typing import Literal

Change = Literal["regression", "improvement", "within", "inconclusive"]
VERDICTS: tuple[Change, ...] = ("regression", "inconclusive", "improvement", "within")  # worst first
HIGHER_IS_BETTER = frozenset({"prefill_tokens_per_s", "decode_tokens_per_s", "top1_agreement", "case_score"})


def worsening_interval(change: tuple[float, float], metric: str) -> tuple[float, float]:
    """An interval of a relative change ((new - old) / old) as an interval of worsening (positive: worse)."""
    low, high = sorted(-bound if metric in HIGHER_IS_BETTER else bound for bound in change)
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
