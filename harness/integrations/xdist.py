"""pytest-xdist: with ``-n N`` (load scheduling) the benchmark module goes to one worker, the rest as usual."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

BENCHMARK_MODULE = "test_benchmarks.py"


def _scope(scheduler: Any, nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return BENCHMARK_MODULE if path.rsplit("/", 1)[-1] == BENCHMARK_MODULE else nodeid


def benchmark_scheduler(config: Any, log: Any) -> Any:
    """An xdist scheduler that sends the benchmark module to one worker and spreads every other test.

    xdist's own ``--dist loadgroup`` reads the ``xdist_group`` mark by renaming node ids, which
    pytest 9 no longer lets it do (xdist 3.8), so the group is told by the module's file name here.
    """
    base = importlib.import_module("xdist.scheduler").LoadScopeScheduling
    return type("BenchmarksOnOneWorker", (base,), {"_split_scope": _scope})(config, log)


class XdistIntegration:
    """Registered by the plugin only when pytest-xdist is installed."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        return benchmark_scheduler(config, log) if config.getvalue("dist") == "load" else None
