"""A pytest plugin for ``benchmarks/suite_times.py``: where each suite's time goes.

Loaded with ``-p benchmarks.suite_profile``, it wraps the harness's expensive calls and charges each to the
suite module whose test (or fixture set-up) was running: model loads, generation (prefill and decode),
other model calls (score, logits, stream), the robustness worker's requests and starts, the fp32 reference,
Foundry Local sessions, and child processes started. At the end it writes the totals as JSON to the file
``HARNESS_SUITE_PROFILE`` names, with each suite's first and last moment (``time.time()``), so a poller outside
the process (``benchmarks/scale.py``) can charge the memory it saw to the suite then running. Measurement only:
nothing here is part of the harness.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from harness.checks import reference
from harness.deploy import foundry
from harness.runtime import genai as runtime_module
from harness.worker import client

CURRENT = ["(session start)"]  # the suite module being run
TOTALS: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))


def _charge(name: str, seconds: float, count: int = 1) -> None:
    TOTALS[CURRENT[0]][f"{name}_s"] += seconds
    TOTALS[CURRENT[0]][f"{name}_n"] += count


def _timed(owner: Any, attribute: str, name: str, after: Callable[[Any, float], None] | None = None) -> None:
    original = getattr(owner, attribute)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = original(*args, **kwargs)
        finally:
            seconds = time.perf_counter() - started
        if after is not None:
            after(result, seconds)
        else:
            _charge(name, seconds)
        return result

    setattr(owner, attribute, wrapper)


def _generation(result: Any, seconds: float) -> None:
    prefill = float(getattr(result, "prefill_seconds", 0.0))
    _charge("generate", seconds)
    TOTALS[CURRENT[0]]["prefill_s"] += prefill
    TOTALS[CURRENT[0]]["decode_s"] += max(seconds - prefill, 0.0)
    TOTALS[CURRENT[0]]["tokens_n"] += len(getattr(result, "token_ids", ()))


_timed(runtime_module.GenAIRuntime, "__init__", "model_load")
_timed(runtime_module.GenAIRuntime, "generate", "generate", _generation)
for method in ("score", "logits"):
    _timed(runtime_module.GenAIRuntime, method, "other_model_call")
_timed(client.WorkerClient, "start", "worker_start")
_timed(client.WorkerClient, "request", "worker_request")
_timed(reference, "reference_data", "reference")
_timed(foundry.FoundryLocalSession, "__enter__", "foundry_start")
_timed(subprocess.Popen, "__init__", "process_start")


def _suite(item: pytest.Item) -> str:
    return Path(str(item.path)).name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    CURRENT[0] = _suite(item)
    started = time.perf_counter()
    TOTALS[CURRENT[0]].setdefault("first_t", time.time())  # wall-clock bounds, for an outside memory poller
    try:
        return (yield)
    finally:
        TOTALS[CURRENT[0]]["wall_s"] += time.perf_counter() - started
        TOTALS[CURRENT[0]]["checks_n"] += 1
        TOTALS[CURRENT[0]]["last_t"] = time.time()


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("HARNESS_SUITE_PROFILE")
    if target:
        Path(target).write_text(
            json.dumps({suite: dict(values) for suite, values in TOTALS.items()}, indent=2), encoding="utf-8"
        )
