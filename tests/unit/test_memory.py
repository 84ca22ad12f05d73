"""The memory fit tells a plateau from steady growth; the sampler sees this process's memory."""

from __future__ import annotations

import itertools
import sys

import pytest

from harness import system
from harness.checks import memory
from harness.checks.memory import KB, MB

BASE = 200 * MB


def noisy(values: list[float], amplitude: float = 8 * KB) -> list[int]:
    """Deterministic page-sized jitter, as RSS shows it."""
    return [int(v + amplitude * ((i * 7919) % 5 - 2) / 2) for i, v in enumerate(values)]


def leaking(per_point: float, points: int = 50) -> list[int]:
    return noisy([BASE + per_point * i for i in range(points)])


def test_theil_sen_slope_is_exact_on_a_line_and_ignores_outliers() -> None:
    assert memory.theil_sen_slope([3.0 + 2.0 * i for i in range(20)]) == pytest.approx(2.0)
    spiky = [3.0 + 2.0 * i for i in range(20)]
    spiky[5] += 1000.0
    spiky[13] -= 500.0
    assert memory.theil_sen_slope(spiky) == pytest.approx(2.0)
    assert memory.theil_sen_slope([1.0]) == 0.0


def test_fit_drops_the_warm_up() -> None:
    series = [BASE + i * MB for i in range(10)] + [BASE + 10 * MB] * 40  # arena: grows, then stops
    trend = memory.fit(series, 10, "generation")
    assert trend.slope_kb == 0.0 and trend.tail_growth_mb == 0.0 and trend.growth_mb == 0.0
    assert len(trend.measured) == 40 and trend.tail == 20
    with_rise = memory.fit(series, 0, "generation")  # the rise is a fifth of the points: the fit still says flat
    assert with_rise.growth_mb == 10.0 and with_rise.slope_kb == 0.0


def test_fit_needs_two_points_after_the_warm_up() -> None:
    with pytest.raises(ValueError, match="3 points leave fewer than 2 after a warm-up of 2"):
        memory.fit([1, 2, 3], 2, "load cycle")


def test_steady_leak_fails_with_one_verdict_line() -> None:
    trend = memory.fit(leaking(64 * KB), 10, "generation")
    assert trend.slope_kb == pytest.approx(64, abs=1)
    verdict = memory.leak_verdict(trend, 16, 0.5)
    assert verdict == ("RSS grew 2.4 MB over 40 generations after 10 warm-up, slope 64.0 KB/generation (limit 16), "
                       "still 1.2 MB over the last 20 (limit 0.5)")


@pytest.mark.parametrize(("per_point_kb", "leaks"), [(0, False), (8, False), (15, False), (24, True), (64, True)])
def test_slope_limit_separates_small_growth_from_a_leak(per_point_kb: float, leaks: bool) -> None:
    trend = memory.fit(leaking(per_point_kb * KB), 10, "generation")
    assert (memory.leak_verdict(trend, 16, 0.2) is not None) is leaks


def test_a_plateau_reached_after_the_warm_up_passes() -> None:
    """1 MB a point until point 20, flat after: most pairwise slopes are 0, the last half is flat."""
    series = noisy([BASE + min(i, 20) * MB for i in range(50)])
    trend = memory.fit(series, 10, "generation")
    assert trend.slope_kb < 16 and trend.tail_growth_mb < 0.5
    assert memory.leak_verdict(trend, 16, 0.5) is None


@pytest.mark.parametrize("at", [25, 35, 45])
def test_one_jump_is_not_a_leak(at: int) -> None:
    """A single step (the allocator taking a new block) moves the slope or the tail, never both."""
    series = noisy([BASE + (4 * MB if i >= at else 0) for i in range(50)])
    assert memory.leak_verdict(memory.fit(series, 10, "generation"), 16, 0.5) is None


def test_growth_that_restarts_in_the_last_half_fails() -> None:
    series = noisy([BASE + max(0, i - 25) * 256 * KB for i in range(50)])  # flat, then 256 KB a point
    verdict = memory.leak_verdict(memory.fit(series, 10, "generation"), 16, 0.5)
    assert verdict is not None and "slope " in verdict and "over the last 20" in verdict


def test_series_section_numbers_points_and_flags_the_warm_up() -> None:
    trend = memory.fit([BASE + i * MB for i in range(12)], 2, "load cycle")
    section = memory.series_section(trend, [MB * i for i in range(12)])
    assert section.splitlines() == [
        "one point per load cycle, after returning freed heap to the OS; the first 2 are warm-up, not fitted",
        "RSS MB:",
        "     1:   200.00   201.00   202.00   203.00   204.00   205.00   206.00   207.00   208.00   209.00",
        "    11:   210.00   211.00",
        "USS MB:",
        "     1:     0.00     1.00     2.00     3.00     4.00     5.00     6.00     7.00     8.00     9.00",
        "    11:    10.00    11.00",
    ]
    assert memory.megabytes([int(1.234 * MB)]) == [1.23]


def test_sampler_marks_memory_this_process_holds() -> None:
    kept: list[bytes] = []
    with memory.MemorySampler(interval_s=0.01) as sampler:
        sampler.mark()
        kept.append(b"\x01" * (32 * MB))
        sampler.mark()
    first, second = sampler.marks
    assert second.rss - first.rss >= 30 * MB
    assert first.uss is not None and second.uss is not None and second.uss - first.uss >= 30 * MB
    assert sampler.rss_series() == [first.rss, second.rss] and sampler.polls >= 1
    assert 0 < sampler.overhead_s < sampler.elapsed_s


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel peak mark is Linux's VmHWM")
def test_sampler_peak_sees_memory_freed_before_the_end() -> None:
    with memory.MemorySampler(interval_s=10) as sampler:  # the thread polls once: the kernel mark must see it
        start = sampler.mark().rss
        transient = b"\x01" * (64 * MB)
        del transient
        after = sampler.mark().rss
    assert after - start < 8 * MB
    assert sampler.peak_rss() - start >= 60 * MB
    lifetime = system.lifetime_peak_rss_bytes()
    assert lifetime is not None and lifetime >= sampler.peak_rss()
    assert sampler.peak() == memory.PeakRss.exactly(sampler.peak_rss(), memory.KERNEL_WINDOW_PEAK)
    assert sampler.heap_trimmed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel peak mark is Linux's VmHWM")
def test_sampler_peak_sees_what_a_call_holding_the_gil_takes_and_gives_back() -> None:
    """As onnxruntime-genai's prefill does: str.join fills a 64 MB list from a C iterator and drops it in one C call,
    so the polling thread cannot run meanwhile; the kernel's window peak sees it, and the results say it is that."""
    with memory.MemorySampler(interval_s=0.005) as sampler:
        start = system.rss_bytes()
        assert "".join(itertools.repeat("", 64 * MB // 8)) == ""
    assert sampler.polls >= 1 and sampler.peak_rss() - start >= 60 * MB
    assert sampler.peak().properties() == {"peak_rss_mb": round(sampler.peak_rss() / MB, 1),
                                           "peak_rss_source": "kernel window peak"}


def test_peak_rss_poller_keeps_the_highest_sample() -> None:
    poller = memory.PeakRssPoller(interval_s=10, name="test-poller")
    poller.start()
    kept = b"\x01" * (32 * MB)
    peak = poller.stop()  # the last sample, taken on stop, sees what the block still holds
    assert kept and peak == poller.peak >= system.rss_bytes() - 8 * MB and poller.polls >= 1
