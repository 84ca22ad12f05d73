"""The memory measurement where Linux's facilities are missing (macOS, Windows), simulated at run time.

``harness.system`` is patched to answer as it does there: no per-window kernel peak (None / False), no malloc_trim
(False), and ``process_peak_rss_mb`` giving the process's lifetime peak (macOS ``ru_maxrss``, Windows
``peak_wset``) or None (nothing). The real ``MemorySampler`` then measures a fake runtime whose peak is hidden from
polling, as onnxruntime-genai's prefill is: it allocates and frees inside one C call that holds the GIL, so the
polling thread cannot run meanwhile. A gate that peak exceeds must not pass.
"""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import system
from harness.checks import memory
from harness.checks.memory import MB
from harness.locations import suites_dir
from harness.runtime.protocol import DEFAULT_OPTIONS, Generation, Prompt, SearchOptions
from harness.system import KB
from harness.testing.fakes import FAKES_CONFTEST, FakeRuntime, write_genai_folder, write_hf_folder

HIDDEN = 64 * MB  # what the fake's prefill takes and gives back
LIMIT = 32 * MB  # a gate on peak growth that the hidden peak exceeds
MODEL_LOAD = 1024 * MB  # a lifetime peak set before the window, far above it (as loading a model sets one)
REAL_RSS = system.rss_bytes


class LifetimePeak:
    """The OS's lifetime peak counter as the simulation keeps it: the highest RSS any sample saw, the peaks the fake
    declares (a kernel's accounting sees every page, polled or not), and ``earlier``, a peak set before the test."""

    def __init__(self, earlier: int = 0) -> None:
        self.peak = REAL_RSS() + earlier

    def rss_bytes(self) -> int:
        rss = REAL_RSS()
        self.peak = max(self.peak, rss)
        return rss

    def reach(self, value: int) -> None:
        self.peak = max(self.peak, value)

    def megabytes(self) -> float:
        return self.peak / MB


def without_linux(monkeypatch: pytest.MonkeyPatch, lifetime: LifetimePeak | None) -> None:
    """``harness.system`` as on macOS / Windows: the lifetime peak from ``lifetime``, or (None) from nothing."""
    monkeypatch.setattr(system, "kernel_peak_rss_bytes", lambda: None)
    monkeypatch.setattr(system, "reset_kernel_peak_rss", lambda: False)
    monkeypatch.setattr(system, "lifetime_peak_rss_bytes", lambda: None)
    monkeypatch.setattr(system, "trim_heap", lambda: False)
    monkeypatch.setattr(system, "rss_bytes", REAL_RSS if lifetime is None else lifetime.rss_bytes)
    monkeypatch.setattr(system, "process_peak_rss_mb", (lambda: None) if lifetime is None else lifetime.megabytes)


@dataclass
class PrefillHidingRuntime(FakeRuntime):
    """A fake whose every generation first takes ``hidden`` bytes and frees them inside one C call holding the GIL:
    ``str.join`` makes its list of ``hidden / 8`` pointers from a C iterator, writes it and drops it, with no Python
    code run between, so no other thread (the sampler's) runs until it returns. ``lifetime`` is told the peak."""

    hidden: int = 0
    lifetime: LifetimePeak | None = None

    def generate(self, prompt: Prompt, options: SearchOptions = DEFAULT_OPTIONS) -> Generation:
        if self.hidden:
            if self.lifetime is not None:
                self.lifetime.reach(REAL_RSS() + self.hidden)
            assert "".join(itertools.repeat("", self.hidden // 8)) == ""
        return super().generate(prompt, options)


def measure(runtime: FakeRuntime) -> memory.PeakRss:
    """One generation's peak, measured as the input-length suite does (lengths.measure)."""
    with memory.MemorySampler() as sampler:
        runtime.generate("What is the capital of France?", SearchOptions(max_new_tokens=8))
    return sampler.peak()


def judge(growth: memory.PeakGrowth, limit: float) -> str:
    """What a gate on ``growth`` concludes: pass, fail, or inconclusive."""
    try:
        judged = memory.growth_to_judge(growth, limit)
    except memory.PeakInconclusive:
        return "inconclusive"
    return "fail" if judged > limit else "pass"


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    return write_genai_folder(tmp_path / "model")


# -- the peak, bounded ---------------------------------------------------------------------------------
def test_with_nothing_but_polling_the_hidden_peak_is_missed_and_said_to_be_a_lower_bound(
    monkeypatch: pytest.MonkeyPatch, fake_model: Path
) -> None:
    without_linux(monkeypatch, None)
    start = REAL_RSS()
    peak = measure(PrefillHidingRuntime(fake_model, hidden=HIDDEN))
    assert peak.low < start + HIDDEN / 2, "the samples saw the hidden peak: the fake no longer hides it"
    assert (peak.high, peak.source, peak.exact) == (None, memory.POLLED_SAMPLES, False)
    assert peak.properties()["peak_rss_source"] == "polled samples (lower bound)"


def test_a_window_that_raises_the_lifetime_peak_has_it_as_its_own(
    monkeypatch: pytest.MonkeyPatch, fake_model: Path
) -> None:
    lifetime = LifetimePeak()
    without_linux(monkeypatch, lifetime)
    start = REAL_RSS()
    peak = measure(PrefillHidingRuntime(fake_model, hidden=HIDDEN, lifetime=lifetime))
    assert peak.source == memory.LIFETIME_PEAK_SET_HERE and peak.exact
    assert peak.low == peak.high == peak.reported >= start + HIDDEN
    assert peak.properties() == {"peak_rss_mb": round(peak.reported / MB, 1),
                                 "peak_rss_source": "process lifetime peak (set in this window)"}


def test_a_lifetime_peak_set_before_the_window_is_reported_as_its_upper_bound(
    monkeypatch: pytest.MonkeyPatch, fake_model: Path
) -> None:
    lifetime = LifetimePeak(earlier=MODEL_LOAD)
    without_linux(monkeypatch, lifetime)
    peak = measure(PrefillHidingRuntime(fake_model, hidden=HIDDEN, lifetime=lifetime))
    assert peak.source == memory.LIFETIME_PEAK_BOUND and not peak.exact
    assert peak.high == peak.reported == lifetime.peak and peak.low < lifetime.peak - MODEL_LOAD / 2
    assert peak.properties() == {"peak_rss_mb": round(lifetime.peak / MB, 1),
                                 "peak_rss_source": "process lifetime peak (upper bound)",
                                 "peak_rss_sampled_mb": round(peak.low / MB, 1)}


# -- a gate on peak growth never passes falsely --------------------------------------------------------------
@pytest.mark.parametrize(("earlier", "limit", "expected"), [
    (0, LIMIT, "fail"),  # the long window sets the lifetime peak: exact, over the limit
    (MODEL_LOAD, LIMIT, "inconclusive"),  # a model load set it: the bounds straddle the limit
    (MODEL_LOAD, 2 * MODEL_LOAD, "pass"),  # ...but even the upper bound is within a limit this wide
], ids=["window-sets-the-peak", "load-set-the-peak", "bound-within-the-limit"])
def test_a_peak_gate_the_hidden_growth_exceeds_does_not_pass(
    monkeypatch: pytest.MonkeyPatch, fake_model: Path, earlier: int, limit: float, expected: str
) -> None:
    lifetime = LifetimePeak(earlier=earlier)
    without_linux(monkeypatch, lifetime)
    short = measure(PrefillHidingRuntime(fake_model, lifetime=lifetime))
    long = measure(PrefillHidingRuntime(fake_model, hidden=HIDDEN, lifetime=lifetime))
    assert judge(memory.peak_growth(short, long), limit) == expected


def test_with_nothing_to_bound_the_peak_a_gate_cannot_pass_however_wide(
    monkeypatch: pytest.MonkeyPatch, fake_model: Path
) -> None:
    without_linux(monkeypatch, None)
    short = measure(PrefillHidingRuntime(fake_model))
    long = measure(PrefillHidingRuntime(fake_model, hidden=HIDDEN))
    assert long.low - short.low < LIMIT, "polling saw the hidden growth: the old measurement would not pass falsely"
    growth = memory.peak_growth(short, long)
    assert judge(growth, LIMIT) == judge(growth, 1000 * MODEL_LOAD) == judge(growth, 0) == "inconclusive"


def test_growth_takes_each_peak_at_its_least_favourable_bound() -> None:
    short = memory.PeakRss(200 * MB, 1200 * MB, memory.LIFETIME_PEAK_BOUND)
    long = memory.PeakRss.exactly(500 * MB, memory.LIFETIME_PEAK_SET_HERE)
    growth = memory.peak_growth(short, long)
    assert (growth.low, growth.high) == (-700 * MB, 300 * MB) and not growth.exact
    assert memory.growth_to_judge(growth, 300 * MB) == 300 * MB  # the upper bound is within: a pass that holds
    exact = memory.peak_growth(memory.PeakRss.exactly(200 * MB), memory.PeakRss.exactly(500 * MB))
    assert (exact.low, exact.high, exact.exact, exact.sources()) == (300 * MB, 300 * MB, True, "")
    assert memory.growth_to_judge(exact, 100 * MB) == 300 * MB  # over: a failure that holds


def test_the_inconclusive_verdict_is_one_line_naming_the_bounds_and_their_sources() -> None:
    short = memory.PeakRss(200 * MB, 1200 * MB, memory.LIFETIME_PEAK_BOUND)
    long = memory.PeakRss(210 * MB, 1200 * MB, memory.LIFETIME_PEAK_BOUND)
    with pytest.raises(memory.PeakInconclusive) as raised:
        memory.growth_to_judge(memory.peak_growth(short, long), 32 * MB)
    assert raised.value.outcome == "inconclusive"  # reported as such (--inconclusive), never as a pass
    assert str(raised.value) == (
        "inconclusive on this platform: the peak RSS growth is known only to lie in [-990, 1000] MB, which holds "
        "the limit of 32 MB (peaks at most 1200 MB (process lifetime peak (upper bound)), 200 MB sampled and at "
        "most 1200 MB (process lifetime peak (upper bound)), 210 MB sampled); only Linux gives a per-window peak "
        "(VmHWM); elsewhere run this suite in a process of its own, so that its largest window can set the "
        "process's peak")
    polled = memory.PeakRss(210 * MB, None, memory.POLLED_SAMPLES)
    with pytest.raises(memory.PeakInconclusive, match=r"lie in \[-inf, inf\] MB, .* at least 210 MB \(polled "
                                                      r"samples \(lower bound\)\)\); only Linux"):
        memory.growth_to_judge(memory.peak_growth(polled, polled), 32 * MB)


# -- leaks without malloc_trim -----------------------------------------------------------------------------------
def series_of(runtime: FakeRuntime, points: int) -> tuple[memory.Trend, memory.MemorySampler]:
    with memory.MemorySampler() as sampler:
        for _ in range(points):
            runtime.generate("Name a colour.", SearchOptions(max_new_tokens=8))
            sampler.mark()
    return memory.fit(sampler.rss_series(), 10, "generation", trimmed=sampler.heap_trimmed), sampler


def test_without_malloc_trim_a_leak_still_fails_and_the_verdict_says_the_heap_was_kept(
    monkeypatch: pytest.MonkeyPatch, fake_model: Path
) -> None:
    without_linux(monkeypatch, LifetimePeak())
    trend, sampler = series_of(FakeRuntime(fake_model, leak_bytes_per_call=64 * KB), 50)
    assert not sampler.heap_trimmed and not trend.trimmed
    verdict = memory.leak_verdict(trend, 16, 0.5)
    assert verdict is not None and verdict.endswith(
        "; freed heap was not returned to the OS before each point (no malloc_trim on this platform), so the series "
        "include heap the allocator keeps; the gates were measured with it returned, on Linux")
    assert memory.series_section(trend, None).splitlines()[0] == (
        "one point per generation, freed heap not returned to the OS; the first 10 are warm-up, not fitted")


def test_without_malloc_trim_a_clean_runtime_still_passes(monkeypatch: pytest.MonkeyPatch, fake_model: Path) -> None:
    without_linux(monkeypatch, LifetimePeak())
    trend, _ = series_of(FakeRuntime(fake_model), 50)
    assert memory.leak_verdict(trend, 16, 0.5) is None


# -- what the memory suite records -------------------------------------------------------------------------------
CONFTEST = FAKES_CONFTEST + """
import harness.system as system

# harness.system as on macOS: no kernel window peak, no malloc_trim, a lifetime peak from getrusage
system.kernel_peak_rss_bytes = lambda: None
system.reset_kernel_peak_rss = lambda: False
system.lifetime_peak_rss_bytes = lambda: None
system.trim_heap = lambda: False
system.process_peak_rss_mb = lambda: 64 * 1024.0  # 64 GB: set long before (a model load), so an upper bound only
"""


def test_the_memory_suite_records_the_peak_source_and_the_untrimmed_heap(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    shutil.copy(suites_dir() / "test_memory.py", pytester.path / "test_memory.py")
    model = write_hf_folder(pytester.path / "hf")
    reports = pytester.path / "reports"
    result = pytester.runpytest_subprocess(
        f"--model={model}", f"--harness-cache-dir={pytester.path / 'cache'}", f"--harness-reports={reports}",
        "--harness-profile=smoke", "-k", "fresh_generator", str(pytester.path / "test_memory.py"))
    result.assert_outcomes(passed=1, deselected=3)
    run = next(folder for folder in reports.iterdir() if (folder / "results.json").is_file())
    (check,) = json.loads((run / "results.json").read_text(encoding="utf-8"))["tests"]
    assert check["properties"]["peak_rss_source"] == "process lifetime peak (upper bound)"
    assert check["properties"]["heap_trimmed"] is False
    assert check["metrics"]["peak_rss_mb"] == 64 * 1024.0 > check["metrics"]["peak_rss_sampled_mb"]
