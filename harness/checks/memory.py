"""Memory of this process over a long run: sampling, the plateau-versus-growth fit, and the verdict.

ONNX Runtime's arena (and glibc's heap) first grows to a plateau, so "RSS went up" is no leak. The
suites mark one point per generation (or per load cycle), drop the warm-up, fit a Theil-Sen slope
(median of all pairwise slopes: one jump or a few outliers do not move it) and call it a leak only
when the whole run AND its last half both keep growing. Also here: the long-lived generator that
the reuse test runs (one onnxruntime-genai generator rewound before each request).

Off Linux there is no per-window peak and no ``malloc_trim``: a window's peak is then bounded (``PeakRss``), a
gate on it passes only when its upper bound does (``growth_to_judge``), and the leak fit says its series were
not trimmed.
"""

from __future__ import annotations

import gc
import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import psutil

from harness import system
from harness.config.gates import Gate
from harness.errors import HarnessError
from harness.properties import INCONCLUSIVE, SoftVerdict
from harness.runtime.protocol import ReusedGenerator, ReusingRuntime, Runtime, SearchOptions
from harness.system import KB

if TYPE_CHECKING:
    from harness.config.gates import Gates

MB = 1024 * KB

# Points dropped before the fit. RSS stops growing after generation 4 on the default model (int4, 2 cores) and after
# generation 3 on Qwen2.5-Coder-0.5B, and after load / Foundry Local cycle 2: see rss_series_mb in results.json after
# `pytest suites/test_memory.py --harness-profile=full`.
WARMUP_GENERATIONS = 6
WARMUP_CYCLES = 2

# Defaults measured on the default model with `pytest suites/test_memory.py` (smoke: 40 generations,
# 5 load and 3 Foundry cycles after the warm-up) and `... --harness-profile=full` (300, 20, 10), on a
# 2-core machine shared with three other jobs.
GATES: tuple[Gate, ...] = (
    Gate("memory_slope_kb_per_generation_max", 16.0, "max", " KB/generation",
         "Theil-Sen slope of RSS after the warm-up, per generation (reused generator, fresh generator per "
         "request); fails only together with memory_tail_growth_mb_max. Measured: 0.0 and 0.17 (full); 0.0, "
         "and 21 once in smoke from a single 0.7 MB step mid-run, which the flat tail (0.01 MB) clears. A 64 "
         "KB/generation leak measures 64 to 82."),
    Gate("memory_slope_kb_per_cycle_max", 2048.0, "max", " KB/cycle",
         "Theil-Sen slope of RSS after the warm-up, per model load/unload or Foundry Local session cycle; "
         "fails only together with memory_tail_growth_mb_max. Measured: -4.5 to 10 KB per load cycle, 36 "
         "to 60 KB per Foundry cycle, and 478 once in smoke (a 0.9 MB step in the last of 3 cycles); a model "
         "never freed costs ~190 MB a cycle."),
    Gate("memory_tail_growth_mb_max", 0.5, "max", " MB",
         "growth over the last half of the measured run (its Theil-Sen slope times its steps): a plateau "
         "has none. Measured: 0.00 to 0.01 (generations), -0.06 to 0.04 (load cycles), 0.03 to 0.91 (Foundry "
         "cycles, see above); a 64 KB/generation leak gives 1.2 over the smoke profile's last 20 generations."),
)


# -- sampling ------------------------------------------------------------------------------------
class PeakRssPoller:
    """A thread that samples this process's RSS (``system.rss_bytes``) every ``interval_s`` from ``start()``
    to ``stop()`` and keeps the highest; it sleeps between samples, so each costs a few microseconds."""

    def __init__(self, interval_s: float, name: str) -> None:
        self.interval_s = interval_s
        self.peak = 0  # bytes
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=name, daemon=True)

    def _poll(self) -> None:
        while True:
            self.peak = max(self.peak, system.rss_bytes())
            self.polls += 1
            if self._stop.wait(self.interval_s):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        """End the polling, take a last sample, and return the peak (bytes)."""
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, system.rss_bytes())
        return self.peak


# Where a window's peak RSS comes from, as the reports name it (``peak_rss_source``).
KERNEL_WINDOW_PEAK = "kernel window peak"  # Linux: VmHWM, reset when the window starts; exact
LIFETIME_PEAK_SET_HERE = "process lifetime peak (set in this window)"  # it rose during the window: exact
LIFETIME_PEAK_BOUND = "process lifetime peak (upper bound)"  # set before the window: the window's is at most it
POLLED_SAMPLES = "polled samples (lower bound)"  # nothing else: a call holding the GIL hides its peak from them
EXACT_SOURCES = (KERNEL_WINDOW_PEAK, LIFETIME_PEAK_SET_HERE)


@dataclass(frozen=True)
class PeakRss:
    """The highest RSS of one window (bytes), as tightly as this platform bounds it: at least ``low`` (the
    highest sample), at most ``high`` (None: nothing bounds it from above)."""

    low: int
    high: int | None
    source: str

    @classmethod
    def exactly(cls, value: int, source: str = KERNEL_WINDOW_PEAK) -> PeakRss:
        return cls(value, value, source)

    @property
    def exact(self) -> bool:
        return self.source in EXACT_SOURCES

    @property
    def reported(self) -> int:
        """The peak to report: never below the truth where anything bounds it (the upper bound), else the samples'."""
        return self.low if self.high is None else self.high

    def describe(self) -> str:
        """The peak in MB and where it comes from, in a few words."""
        if self.exact:
            return f"{self.low / MB:.0f} MB ({self.source})"
        if self.high is None:
            return f"at least {self.low / MB:.0f} MB ({self.source})"
        return f"at most {self.high / MB:.0f} MB ({self.source}), {self.low / MB:.0f} MB sampled"

    def properties(self) -> dict[str, float | str]:
        """For the run's results: the reported peak, its source and, when that is a bound, what the samples saw."""
        values: dict[str, float | str] = {"peak_rss_mb": round(self.reported / MB, 1), "peak_rss_source": self.source}
        if not self.exact:
            values["peak_rss_sampled_mb"] = round(self.low / MB, 1)
        return values


def _lifetime_peak_bytes() -> int | None:
    """This process's peak RSS since it started (macOS ``ru_maxrss``, Windows ``peak_wset``), or None."""
    peak_mb = system.process_peak_rss_mb()
    return None if peak_mb is None else round(peak_mb * MB)


@dataclass(frozen=True)
class Mark:
    """One point of the series: memory right after a generation (or cycle), freed heap returned where it can be."""

    seconds: float  # since the sampler started
    rss: int  # bytes
    uss: int | None  # bytes private to this process; None where psutil cannot read it


class MemorySampler:
    """This process's memory while a block runs: a thread polls RSS, ``mark()`` adds a point.

    ``mark()`` first returns freed heap to the OS (glibc ``malloc_trim``): without it RSS swings by
    +-30 MB between Foundry Local cycles (measured), with it the series shows memory the process
    still holds, which is what a leak keeps. It costs about 5 ms (mostly reading USS from
    /proc/self/smaps_rollup), counted in ``overhead_s``. Where there is no such call (macOS, Windows)
    ``heap_trimmed`` is False and the series include heap the allocator keeps.

    The peak (``peak()``) is the kernel's high-water mark for the window where there is one (Linux): onnxruntime-genai
    holds the GIL during prefill, so the polling thread cannot see the peak there. Elsewhere it is bounded: by the
    process's lifetime peak from above (exact when the window raised it), by the samples from below.
    """

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.marks: list[Mark] = []
        self.overhead_s = 0.0
        self.heap_trimmed = False
        self._poller = PeakRssPoller(interval_s, "harness-memory-sampler")
        self._kernel_peak = False
        self._lifetime_at_start: int | None = None
        self._started = 0.0
        self._peak: PeakRss | None = None  # fixed when the block ends

    def __enter__(self) -> MemorySampler:
        self.heap_trimmed = system.trim_heap()
        self._kernel_peak = system.reset_kernel_peak_rss()
        self._lifetime_at_start = None if self._kernel_peak else _lifetime_peak_bytes()
        self._started = time.perf_counter()
        self._poller.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._poller.stop()
        self._peak = self._measure_peak()

    @property
    def polls(self) -> int:
        """RSS samples the polling thread took."""
        return self._poller.polls

    @staticmethod
    def _uss() -> int | None:
        try:
            return int(system.this_process().memory_full_info().uss)
        except (psutil.AccessDenied, AttributeError):
            return None

    def mark(self, collect: bool = False) -> Mark:
        """Record memory now; ``collect`` runs the garbage collector first (for load/unload cycles)."""
        started = time.perf_counter()
        if collect:
            gc.collect()
        system.trim_heap()
        point = Mark(started - self._started, system.rss_bytes(), self._uss())
        self.marks.append(point)
        self.overhead_s += time.perf_counter() - started
        return point

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._started

    def _measure_peak(self) -> PeakRss:
        sampled = max(self._poller.peak, system.rss_bytes(), *(m.rss for m in self.marks))
        kernel = system.kernel_peak_rss_bytes() if self._kernel_peak else None
        if kernel is not None:
            return PeakRss.exactly(max(sampled, kernel), KERNEL_WINDOW_PEAK)
        lifetime = _lifetime_peak_bytes()
        if lifetime is None or self._lifetime_at_start is None:
            return PeakRss(sampled, None, POLLED_SAMPLES)
        if lifetime > self._lifetime_at_start:  # the peak rose during the window, so it is the window's own
            return PeakRss.exactly(max(sampled, lifetime), LIFETIME_PEAK_SET_HERE)
        return PeakRss(sampled, max(sampled, lifetime), LIFETIME_PEAK_BOUND)

    def peak(self) -> PeakRss:
        """The highest RSS since the block started, bounded as this platform allows (fixed once the block ends)."""
        return self._peak if self._peak is not None else self._measure_peak()

    def peak_rss(self) -> int:
        """The highest RSS since the block started (bytes): exact, or an upper bound, or (with nothing to bound it
        from above) the samples'; ``peak()`` says which."""
        return self.peak().reported

    def rss_series(self) -> list[int]:
        return [m.rss for m in self.marks]

    def uss_series(self) -> list[int] | None:
        values = [m.uss for m in self.marks]
        return None if any(v is None for v in values) else [v for v in values if v is not None]

    def leak_failure(self, warmup: int, unit: str, slope_gate: str, gates: Gates,
                     record_property: Callable[[str, object], None], generations: int) -> tuple[str, str] | None:
        """The series (one point per ``unit``, the first ``warmup`` not fitted) and its fit recorded;
        None when memory reaches a plateau, else the leak verdict line and the series as a report section."""
        trend = fit(self.rss_series(), warmup, unit, trimmed=self.heap_trimmed)
        uss = self.uss_series()
        record_property("rss_series_mb", megabytes(trend.series))
        record_property("uss_series_mb", megabytes(uss) if uss is not None else None)
        record_property("warmup", warmup)
        record_property("unit", unit)
        record_property("generations", generations)
        record_property("slope_kb_per_generation" if unit == "generation" else "slope_kb_per_cycle",
                        round(trend.slope_kb, 2))
        record_property("tail_growth_mb", round(trend.tail_growth_mb, 3))
        record_property("heap_trimmed", trend.trimmed)
        for name, value in self.peak().properties().items():  # peak_rss_mb, peak_rss_source (, peak_rss_sampled_mb)
            record_property(name, value)
        record_property("sampler_overhead_fraction", round(self.overhead_s / self.elapsed_s, 4))
        verdict = leak_verdict(trend, gates[slope_gate], gates["memory_tail_growth_mb_max"])
        if verdict is None:
            return None
        return verdict, series_section(trend, uss)


# -- a gate on the growth of a peak -------------------------------------------------------------------
class PeakInconclusive(SoftVerdict):
    """The bounds this platform gives two peaks straddle a gate's limit: the gate can neither pass nor fail. Reported
    as the run's other inconclusive verdicts are (``--inconclusive``): its own outcome, never a pass."""

    outcome = INCONCLUSIVE


@dataclass(frozen=True)
class PeakGrowth:
    """How far one window's peak RSS rose above another's (bytes): at least ``low``, at most ``high`` (either may
    be infinite when a peak has no bound on that side)."""

    low: float
    high: float
    before: PeakRss
    after: PeakRss

    @property
    def exact(self) -> bool:
        return self.before.exact and self.after.exact

    def sources(self) -> str:
        """Where both peaks come from, for a verdict that rests on bounds ("" when both are exact)."""
        if self.exact:
            return ""
        return f"peaks {self.before.describe()} and {self.after.describe()}"


def peak_growth(before: PeakRss, after: PeakRss) -> PeakGrowth:
    """``after``'s peak minus ``before``'s, bounded: its upper bound takes ``before`` at its lowest, ``after`` at its
    highest, so a gate judged on it can fail falsely but never pass falsely."""
    before_high = math.inf if before.high is None else before.high
    after_high = math.inf if after.high is None else after.high
    return PeakGrowth(after.low - before_high, after_high - before.low, before, after)


def growth_to_judge(growth: PeakGrowth, limit: float) -> float:
    """The growth (bytes) a gate compares with ``limit``: the upper bound when it is within the limit (the pass
    holds whatever the true peaks were), the lower bound when even that is over (so does the failure).

    Between the two the gate cannot be decided here: a pass would be a guess and a failure would blame the model
    for the platform, so PeakInconclusive (an inconclusive verdict, failed by ``--inconclusive=fail``) says so.
    """
    if growth.high <= limit:
        return growth.high
    if growth.low > limit:
        return growth.low
    raise PeakInconclusive(
        f"inconclusive on this platform: the peak RSS growth is known only to lie in {_span(growth)}, which holds "
        f"the limit of {limit / MB:.0f} MB ({growth.sources()}); only Linux gives a per-window peak (VmHWM); "
        "elsewhere run this suite in a process of its own, so that its largest window can set the process's peak")


def _span(growth: PeakGrowth) -> str:
    low = "-inf" if math.isinf(growth.low) else f"{growth.low / MB:.0f}"
    high = "inf" if math.isinf(growth.high) else f"{growth.high / MB:.0f}"
    return f"[{low}, {high}] MB"


# -- the fit -------------------------------------------------------------------------------------
def theil_sen_slope(values: Sequence[float]) -> float:
    """Median of the slopes between every pair of points (x = index); 0 for fewer than two points."""
    n = len(values)
    if n < 2:
        return 0.0
    return statistics.median((values[j] - values[i]) / (j - i) for i in range(n) for j in range(i + 1, n))


@dataclass(frozen=True)
class Trend:
    """The fit of one series (bytes per point), warm-up excluded."""

    unit: str  # what one point is: "generation", "load cycle", "Foundry Local cycle"
    series: tuple[int, ...]  # every point, warm-up included (bytes)
    warmup: int
    slope_kb: float  # Theil-Sen slope after the warm-up, KB per unit
    tail_growth_mb: float  # the last half's Theil-Sen slope times its number of steps, MB
    trimmed: bool = True  # freed heap went back to the OS before each point (glibc malloc_trim)

    @property
    def measured(self) -> tuple[int, ...]:
        return self.series[self.warmup:]

    @property
    def tail(self) -> int:
        """Points in the last half (the tail) of the measured run."""
        return _tail_size(len(self.measured))

    @property
    def growth_mb(self) -> float:
        return (self.measured[-1] - self.measured[0]) / MB


def _tail_size(measured: int) -> int:
    return max(2, (measured + 1) // 2)


def fit(series: Sequence[int], warmup: int, unit: str, trimmed: bool = True) -> Trend:
    """Fit a series of byte counts; at least two points must remain after the warm-up. ``trimmed``: whether freed
    heap was returned to the OS before each point (``MemorySampler.heap_trimmed``)."""
    if len(series) - warmup < 2:
        raise ValueError(f"{len(series)} points leave fewer than 2 after a warm-up of {warmup}")
    measured = [float(v) for v in series[warmup:]]
    tail = measured[-_tail_size(len(measured)):]
    return Trend(unit, tuple(series), warmup, theil_sen_slope(measured) / KB,
                 theil_sen_slope(tail) * (len(tail) - 1) / MB, trimmed)


# A leak verdict on a series taken without malloc_trim (macOS, Windows) says so. The gates keep their values there:
# room would let a small leak pass, while a leak raises untrimmed points too (each point's transient buffers sit on
# top of what was leaked); what the allocator keeps adds steps, which the fit's slope-and-tail rule absorbs.
UNTRIMMED = ("freed heap was not returned to the OS before each point (no malloc_trim on this platform), so the "
             "series include heap the allocator keeps; the gates were measured with it returned, on Linux")


def leak_verdict(trend: Trend, slope_limit_kb: float, tail_limit_mb: float) -> str | None:
    """One line when memory keeps growing (slope and tail growth both over their limits), else None."""
    if trend.slope_kb <= slope_limit_kb or trend.tail_growth_mb <= tail_limit_mb:
        return None
    return (f"RSS grew {trend.growth_mb:.1f} MB over {len(trend.measured)} {trend.unit}s after "
            f"{trend.warmup} warm-up, slope {trend.slope_kb:.1f} KB/{trend.unit} (limit {slope_limit_kb:g}), "
            f"still {trend.tail_growth_mb:.1f} MB over the last {trend.tail} (limit {tail_limit_mb:g})"
            + ("" if trend.trimmed else f"; {UNTRIMMED}"))


def series_section(trend: Trend, uss: Sequence[int] | None, per_line: int = 10) -> str:
    """The series in MB, ten points a line numbered from 1, the warm-up flagged: the failure's detail."""
    how = "after returning freed heap to the OS" if trend.trimmed else "freed heap not returned to the OS"
    lines = [f"one point per {trend.unit}, {how}; the first {trend.warmup} are warm-up, not fitted"]
    for name, values in (("RSS MB", trend.series), ("USS MB", uss)):
        if values is None:
            continue
        lines.append(f"{name}:")
        for start in range(0, len(values), per_line):
            chunk = " ".join(f"{v / MB:8.2f}" for v in values[start:start + per_line])
            lines.append(f"  {start + 1:4d}: {chunk}")
    return "\n".join(lines)


def megabytes(values: Sequence[int]) -> list[float]:
    """Bytes to MB rounded to 10 KB, for the run's results."""
    return [round(v / MB, 2) for v in values]


# -- one long-lived generator --------------------------------------------------------------------
class ReuseUnsupported(HarnessError):
    """The runtime cannot keep one generator across requests."""


def open_reused_generator(runtime: Runtime, options: SearchOptions, max_prompt_tokens: int) -> ReusedGenerator:
    """The runtime's long-lived generator (``ReusingRuntime``: GenAIRuntime and FakeRuntime are)."""
    if isinstance(runtime, ReusingRuntime):
        return runtime.reused_generator(options, max_prompt_tokens)
    raise ReuseUnsupported(f"{type(runtime).__name__} has no reused_generator(options, max_prompt_tokens); "
                           "add one to test a long-lived generator")

