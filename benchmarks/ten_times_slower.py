"""A plugin that makes the default model decode ten times slower, to time ``--harness-budget`` on a slow model.

    python benchmarks/suite_times.py --harness-budget=10m -p benchmarks.ten_times_slower

The real runtime (``harness.testing.faults.SlowedRuntime``) sleeps after each token it generates, nine times
the default model's decode step on the CI machine kind (1 / 170 tokens/s), and after a prefill, nine times its
time (1.7 ms a prompt token, 512 tokens in 0.88 s), so both take ten. Plugged in through the runtime hook, it
slows the robustness worker too; model loads and Foundry Local's own engine keep their speed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.config.budget import REFERENCE_DECODE_TPS
from harness.testing.faults import SlowedRuntime

DELAY_PER_TOKEN_S = 9 / REFERENCE_DECODE_TPS
DELAY_PER_PROMPT_TOKEN_S = 9 * 0.88 / 512


def _slowed(path: Path, ep: str) -> SlowedRuntime:
    return SlowedRuntime(path, DELAY_PER_TOKEN_S, ep, DELAY_PER_PROMPT_TOKEN_S)


def pytest_harness_runtime_factory(config: pytest.Config) -> Callable[[Path, str], SlowedRuntime]:
    return _slowed
