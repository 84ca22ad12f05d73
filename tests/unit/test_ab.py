"""The A/B statistics: the distribution-free interval of a median, paired verdicts, and the pairs' order."""

from __future__ import annotations

import random

import pytest

from harness.checks.ab import AB_MIN_PAIRS, median_interval, pair_orders, paired_verdict


def test_the_median_interval_is_the_sign_tests_order_statistics() -> None:
    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # 2 / 32 = 6% > 5%: no 95% interval from 5 values
    assert median_interval([float(v) for v in range(6)]) == (0.0, 5.0)  # 2 / 64 = 3.1%
    assert median_interval([float(v) for v in range(10)]) == (1.0, 8.0)  # ranks 2 and 9: 97.9%
    assert median_interval([float(v) for v in range(20)]) == (5.0, 14.0)  # ranks 6 and 15: 95.9%


def test_the_interval_covers_the_median_as_often_as_it_says() -> None:
    rng = random.Random(7)
    covered = sum(low <= 0.0 <= high for low, high in
                  (median_interval([rng.gauss(0, 1) for _ in range(AB_MIN_PAIRS)]) or (1, 1) for _ in range(2000)))
    assert 0.96 <= covered / 2000 <= 0.995  # 97.9% nominal for 10 pairs


@pytest.mark.parametrize(("slower", "verdict"), [(1.0, "within"), (1.25, "regression"), (1.10, "inconclusive"),
                                                 (0.75, "improvement")])
def test_paired_ratios_give_the_three_outcomes(slower: float, verdict: str) -> None:
    """Rounds whose machine speed swings by 2x, the same swing in both models: the pairs cancel it."""
    rng = random.Random(3)
    machine = [rng.uniform(1.0, 2.0) for _ in range(AB_MIN_PAIRS)]
    baseline = [100.0 / m * rng.uniform(0.99, 1.01) for m in machine]  # tokens/s
    current = [100.0 / slower / m * rng.uniform(0.99, 1.01) for m in machine]
    result = paired_verdict("decode_tokens_per_s", current, baseline, 0.10)
    assert result.verdict == verdict, result.line()
    assert result.pairs == AB_MIN_PAIRS and result.interval is not None


@pytest.mark.parametrize("slower", [1.0, 1.05, 1.09, 1.10, 1.11, 1.15, 1.25])
def test_tokens_per_second_and_time_per_token_of_the_same_pairs_agree(slower: float) -> None:
    """A rate is judged as the time it implies: 1 / 1.11 of the tokens/s is 11% more time per token, not 9.9%."""
    rng = random.Random(5)
    baseline_tpot = [0.01 * rng.uniform(0.99, 1.01) for _ in range(AB_MIN_PAIRS)]
    current_tpot = [t * slower * rng.uniform(0.99, 1.01) for t in baseline_tpot]
    by_time = paired_verdict("tpot_s", current_tpot, baseline_tpot, 0.10)
    by_rate = paired_verdict("decode_tokens_per_s", [1 / t for t in current_tpot], [1 / t for t in baseline_tpot], 0.10)
    assert by_rate.verdict == by_time.verdict, (by_time.line(), by_rate.line())
    assert by_rate.note == by_time.note


def test_too_few_pairs_are_inconclusive() -> None:
    result = paired_verdict("tpot_s", [2.0] * 5, [1.0] * 5, 0.10)
    assert result.verdict == "inconclusive" and result.note == "5 pairs: at least 6 give a 95% interval"


def test_the_order_of_each_pair_is_random_and_seeded() -> None:
    orders = pair_orders(40)
    assert orders == pair_orders(40) and 10 < sum(orders) < 30
