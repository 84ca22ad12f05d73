"""Malformed input and invalid generation settings: each gets a clean rejection or a well-formed answer,
never a crash or a hang, and the model still answers a known-good prompt as before.

The model runs in a worker process (``harness.worker``), so a native crash or a hang fails one case
and the session carries on. The cases, and what correct means for each, are in ``harness.robustness.catalog``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness import INPUT_CASES, SETTING_CASES, MemoryPlan, ProbeCase, Prober, Profile

SUITE = "test_malformed.py"


def _check(prober: Prober, case: ProbeCase, profile: Profile, memory: MemoryPlan | None,
           record_property: Callable[[str, object], None]) -> None:
    skip = prober.skip_reason(case, profile, memory, SUITE)
    if skip is not None:
        pytest.skip(skip)
    probe = prober.run(case)
    for name, value in probe.properties().items():
        record_property(name, value)
    if probe.verdict.status == "known":
        pytest.xfail(probe.verdict.line)
    if probe.verdict.status == "fail":
        pytest.fail(f"{case.id}: {probe.report()}", pytrace=False)


def _params(cases: tuple[ProbeCase, ...]) -> list[Any]:
    """Chat cases are skipped for a base model without a chat template."""
    return [pytest.param(case, id=case.id, marks=pytest.mark.harness_chat if case.needs_chat_template else ())
            for case in cases]


@pytest.mark.parametrize("case", _params(INPUT_CASES))
def test_malformed_input(harness_prober: Prober, harness_profile: Profile, harness_memory_plan: MemoryPlan | None,
                         record_property: Callable[[str, object], None], case: ProbeCase) -> None:
    _check(harness_prober, case, harness_profile, harness_memory_plan, record_property)


@pytest.mark.parametrize("case", _params(SETTING_CASES))
def test_invalid_setting(harness_prober: Prober, harness_profile: Profile, harness_memory_plan: MemoryPlan | None,
                         record_property: Callable[[str, object], None], case: ProbeCase) -> None:
    _check(harness_prober, case, harness_profile, harness_memory_plan, record_property)
