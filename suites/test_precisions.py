"""With ``--precision int4,fp32`` (or ``all``): build each precision once and measure the deployment
guide's comparison table: size, load time, speed, memory, case quality and parity, plus the
smallest precision that passes every quality gate. The other suites test the first precision."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness import (
    CaseSet,
    Gates,
    PathsFactory,
    PreparedModel,
    ReferenceData,
    Settings,
    measure_precision,
    report_precisions,
)


def test_precision_comparison(
    harness_settings: Settings, harness_cases: CaseSet, harness_gates: Gates, harness_run_dir: Path,
    harness_build_precision: Callable[[str], PreparedModel], harness_paths_factory: PathsFactory,
    harness_parity_reference: ReferenceData,
    record_property: Callable[[str, object], None], capsys: pytest.CaptureFixture[str],
) -> None:
    if len(harness_settings.precisions) < 2:
        pytest.skip("one precision under test; pass --precision int4,fp32 (or all) to compare precisions")
    results = [measure_precision(precision, harness_build_precision, harness_paths_factory, harness_cases,
                                 harness_gates, harness_parity_reference, harness_settings.ep,
                                 unstable_fails=harness_settings.unstable == "fail")
               for precision in harness_settings.precisions]
    table, rows, best = report_precisions(results, harness_run_dir)
    record_property("precision_table", rows)
    record_property("recommended_precision", best.precision if best else None)
    with capsys.disabled():
        print(f"\nharness: precision comparison ({harness_run_dir / 'precisions.md'}):\n{table}")
    assert best is not None, f"no precision passes every quality gate:\n{table}"
