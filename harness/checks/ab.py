"""A/B timing in one run: the model under test against a baseline model loaded beside it (``--harness-ab``).

Two runs made minutes apart meet two machines: on a shared VM the speed changes between them by more than the
10% a gate looks for. Within one run the two models meet the same machine, round after round: each round times
one generation of each, in an order drawn per round (so neither always runs first, on a warmer cache), on the
same prompt and settings. The verdict is on the paired ratios (this model's metric over the baseline's, round by
round): their median, with a distribution-free 95% interval for it (order statistics, as the sign test gives),
judged by the one timing rule (``harness.checks.timing``).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.checks.bench import METRICS, RoundMetrics
from harness.checks.timing import VERDICTS, Change, timing_verdict, worsening_interval
from harness.properties import INCONCLUSIVE, SoftVerdict
from harness.runtime.protocol import Generation, Runtime

AB_MIN_PAIRS = 10  # rounds an A/B benchmark runs at least: 6 is the fewest with a 95% interval, 10 narrows it
CONFIDENCE = 0.95
SEED = 20261206  # the order of each pair: random, and the same in every run


@dataclass(frozen=True)
class ABModels:
    """What an A/B benchmark times: the baseline, and the model under test a second time, loaded after the baseline
    (the session's copy was loaded before it). Rounds alternate the two copies of the model under test: copies of one
    model in one process decode at speeds of their own, up to 12% apart here (``benchmarks/load_order.py``), a fixed
    offset the pairs cannot see as noise, and two copies average it down."""

    baseline: Runtime
    current_after: Runtime


class InconclusiveVerdict(SoftVerdict):
    """Raised by a timing check whose interval straddles its limit; reported per ``--inconclusive``."""

    outcome = INCONCLUSIVE


@dataclass(frozen=True)
class Pair:
    """One round: a generation of the model under test and one of the baseline, in the order they ran."""

    current: Generation
    baseline: Generation
    current_first: bool


def pair_orders(rounds: int, seed: int = SEED) -> list[bool]:
    """Whether the model under test runs first, per round: drawn at random, seeded."""
    rng = random.Random(seed)
    return [rng.random() < 0.5 for _ in range(rounds)]


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """A distribution-free interval for the median: the k-th smallest and k-th largest values, with k the largest
    rank whose binomial tail stays within (1 - confidence) / 2; None when there are too few values (under 6 at
    95%)."""
    ordered, n = sorted(values), len(values)
    tail, k = 0.0, 0
    while k < n and tail + math.comb(n, k) / 2**n <= (1 - confidence) / 2:
        tail += math.comb(n, k) / 2**n
        k += 1
    return None if k == 0 else (ordered[k - 1], ordered[n - k])


@dataclass(frozen=True)
class PairedVerdict:
    """One metric of an A/B benchmark: the median ratio of this model's values over the baseline's."""

    metric: str
    ratio: float
    interval: tuple[float, float] | None  # 95% interval of the median ratio
    pairs: int
    verdict: Change
    note: str

    def line(self) -> str:
        interval = (f", 95% CI {self.interval[0]:.3f} .. {self.interval[1]:.3f}" if self.interval
                    else ", no interval")
        return (f"{self.verdict.upper():12} {self.metric}: this model / the baseline = {self.ratio:.3f} (median of "
                f"{self.pairs} pairs{interval}): {self.note}")


def paired_verdict(metric: str, current: Sequence[float], baseline: Sequence[float],
                   threshold: float) -> PairedVerdict:
    """The verdict on one metric from its values per round, paired by round."""
    ratios = [c / b for c, b in zip(current, baseline, strict=True) if b > 0]
    ratio = statistics.median(ratios)
    interval = median_interval(ratios)
    if interval is None:
        return PairedVerdict(metric, ratio, None, len(ratios), "inconclusive",
                             f"{len(ratios)} pairs: at least 6 give a 95% interval")
    verdict, note = timing_verdict(worsening_interval((interval[0] - 1, interval[1] - 1), metric), threshold)
    return PairedVerdict(metric, ratio, interval, len(ratios), verdict, note)


def judge_pairs(pairs: Sequence[Pair], threshold: float) -> list[PairedVerdict]:
    """Every token metric of the pairs, worst verdict first."""
    current = [RoundMetrics.of(pair.current) for pair in pairs]
    baseline = [RoundMetrics.of(pair.baseline) for pair in pairs]
    verdicts = []
    for metric in METRICS:
        ours, theirs = [getattr(r, metric) for r in current], [getattr(r, metric) for r in baseline]
        if ours and all(v is not None for v in ours + theirs):
            verdicts.append(paired_verdict(metric, ours, theirs, threshold))
    return sorted(verdicts, key=lambda v: VERDICTS.index(v.verdict))


def interleaved(run_current: Callable[[], Generation], run_baseline: Callable[[], Generation], rounds: int,
                seed: int = SEED) -> list[Pair]:
    """``rounds`` pairs, each in its drawn order (for a caller without its own timer loop)."""
    pairs = []
    for current_first in pair_orders(rounds, seed):
        if current_first:
            current, baseline = run_current(), run_baseline()
        else:
            baseline, current = run_baseline(), run_current()
        pairs.append(Pair(current, baseline, current_first))
    return pairs
