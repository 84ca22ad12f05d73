"""The process's resources while a benchmark measures: its peak RSS, its CPU, and what the rest of the machine used."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from types import TracebackType

import psutil

from harness.checks.memory import PeakRssPoller
from harness.system import this_process


@dataclass(frozen=True)
class Resources:
    peak_rss_mb: float
    cpu_percent: float  # process CPU time / wall time, in percent of one core (as top shows it)
    cpu_cores: int
    other_cpu_percent: float  # CPU the rest of the machine used meanwhile, in percent of all its cores


class ResourceSampler:
    """Polls this process's RSS in a thread while the block runs, and its CPU time at both ends.

    The thread sleeps between polls, so it costs a few microseconds every ``interval_s``.
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self._poller = PeakRssPoller(interval_s, "harness-rss-sampler")
        self._cpu_start = 0.0
        self._wall_start = 0.0
        self._busy_start = 0.0
        self.result: Resources | None = None

    @staticmethod
    def _cpu_seconds() -> float:
        times = this_process().cpu_times()
        return float(times.user + times.system)

    @staticmethod
    def _machine_busy_seconds() -> float:
        times = psutil.cpu_times()
        return float(times.user + times.system + getattr(times, "nice", 0.0) + getattr(times, "irq", 0.0)
                     + getattr(times, "softirq", 0.0) + getattr(times, "steal", 0.0))

    def __enter__(self) -> ResourceSampler:
        self._cpu_start, self._wall_start = self._cpu_seconds(), time.perf_counter()
        self._busy_start = self._machine_busy_seconds()
        self._poller.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        peak = self._poller.stop()
        wall = time.perf_counter() - self._wall_start
        cpu = self._cpu_seconds() - self._cpu_start
        others = max(self._machine_busy_seconds() - self._busy_start - cpu, 0.0)
        cores = os.cpu_count() or 1
        self.result = Resources(peak / 2**20, 100.0 * cpu / wall if wall > 0 else 0.0, cores,
                                100.0 * others / (wall * cores) if wall > 0 else 0.0)
