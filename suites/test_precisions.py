"""With ``--precision int4,fp32`` (or ``all``): build each precision once and measure the deployment
guide's comparison table: size, load time, speed, memory, case quality and parity, plus the
smallest precision that passes every quality gate. The other suites test the first precision."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import CaseSet, Gates, HarnessConfig, PathsFactory, PreparedModel, RuntimeFailure
from harness.build.probe import probe
from harness.checks.parity import ReferenceData, measure_parity
from harness.checks.precisions import PrecisionResult, evaluate_cases, markdown, recommend, table_rows
from harness.errors import BuildError

PARITY_FIGURES = ("ppl_ratio", "kl_mean", "kl_p95", "top1_agreement")


def test_precision_comparison(
    harness_config: HarnessConfig, harness_cases: CaseSet, harness_gates: Gates, harness_run_dir: Path,
    harness_build_precision: Callable[[str], PreparedModel], harness_paths_factory: PathsFactory,
    harness_parity_reference: ReferenceData,
    record_property: Callable[[str, object], None], capsys: pytest.CaptureFixture[str],
) -> None:
    if len(harness_config.precisions) < 2:
        pytest.skip("one precision under test; pass --precision int4,fp32 (or all) to compare precisions")
    results = []
    for precision in harness_config.precisions:
        result = PrecisionResult(precision)
        results.append(result)
        try:
            model = harness_build_precision(precision)
            result.measured = probe(model.path, harness_config.ep)
        except (BuildError, RuntimeFailure) as exc:  # reported in the table, with the reason
            result.unavailable = str(exc)
            continue
        with harness_paths_factory(model) as paths:
            evaluate_cases(paths, harness_cases, harness_gates, result,
                           unstable_fails=harness_config.unstable == "fail")
            parity = measure_parity(paths.primary, harness_parity_reference)
            result.parity = {name: getattr(parity.overall, name) for name in PARITY_FIGURES}
            result.gate_failures += parity.failures(harness_gates)
    table = markdown(results)
    (harness_run_dir / "precisions.md").write_text(table, encoding="utf-8")
    (harness_run_dir / "precisions.json").write_text(json.dumps(table_rows(results), indent=2), encoding="utf-8")
    best = recommend(results)
    record_property("precision_table", table_rows(results))
    record_property("recommended_precision", best.precision if best else None)
    with capsys.disabled():
        print(f"\nharness: precision comparison ({harness_run_dir / 'precisions.md'}):\n{table}")
    assert best is not None, f"no precision passes every quality gate:\n{table}"
