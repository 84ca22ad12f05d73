"""pytest-benchmark: its history under the reports folder, and timed benchmarks under xdist."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARK_STORAGE_DEFAULT = "file://./.benchmarks"  # pytest-benchmark's own default


class BenchmarkIntegration:
    """Registered by the plugin only when pytest-benchmark is installed."""

    def __init__(self, reports_dir: Path) -> None:
        self.reports_dir = reports_dir

    def pytest_configure(self, config: pytest.Config) -> None:
        """pytest-benchmark keeps its history under reports/benchmarks/ unless told otherwise; only when it
        will save or compare, since it creates its storage folder whenever it starts."""
        option = config.option
        used = any(getattr(option, name, None) for name in ("benchmark_save", "benchmark_autosave",
                                                             "benchmark_compare"))
        if used and getattr(option, "benchmark_storage", None) == BENCHMARK_STORAGE_DEFAULT:
            option.benchmark_storage = f"file://{(self.reports_dir / 'benchmarks').resolve()}"

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """pytest-benchmark turns itself off under xdist (it has no switch against that, so its session
        object is told directly); the benchmark module runs timed on one worker instead
        (``harness.integrations.xdist``). ``--benchmark-disable`` still turns it off: pytest-benchmark then
        raises no xdist warning."""
        benchmarks = getattr(session.config, "_benchmarksession", None)
        if benchmarks is not None and getattr(benchmarks, "xdist_warning", False):
            benchmarks.disabled = False
            benchmarks.xdist_warning = False
