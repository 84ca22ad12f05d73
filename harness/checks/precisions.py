"""The deployment guide's precision comparison, measured: size, speed, memory and quality per
precision, and the smallest precision that passes every quality gate."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.checks.cases import CaseSet
from harness.checks.output_format import answer_context
from harness.checks.parity import ReferenceData, measure_parity
from harness.checks.quality import QualityScores, gate_failures, mean_scores
from harness.checks.stability import ComputePaths
from harness.config.gates import Gates
from harness.errors import BuildError, RuntimeFailure
from harness.preparation.probe import probe
from harness.runtime.protocol import LogitsRuntime

if TYPE_CHECKING:
    from harness.preparation.pipeline import PreparedModel

PARITY_FIGURES = ("ppl_ratio", "kl_mean", "kl_p95", "top1_agreement")


@dataclass
class PrecisionResult:
    precision: str
    unavailable: str | None = None  # why this precision could not be built or run here
    measured: dict[str, Any] = field(default_factory=dict)  # harness.preparation.probe's figures
    cases_passed: int = 0
    cases_total: int = 0
    cases_unstable: list[str] = field(default_factory=list)  # cases (or "domain quality") the paths disagree on
    quality: dict[str, float] = field(default_factory=dict)  # mean scores of golden answers
    parity: dict[str, float] = field(default_factory=dict)  # against the fp32 reference
    gate_failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.unavailable is None and not self.gate_failures


def evaluate_cases(paths: ComputePaths, cases: CaseSet, gates: Gates, result: PrecisionResult,
                   unstable_fails: bool) -> None:
    """Run every case on each compute path: asserted cases must pass, golden answers must meet the gates.
    A case whose paths disagree is unstable: listed, and a failure only when ``unstable_fails``."""
    context = answer_context(paths.primary)
    scored: list[list[QualityScores]] = [[] for _ in paths.paths]
    for case in cases:
        per_path = [[path.runtime.generate(case.prompt, options) for options in case.sample_options()]
                    for path in paths.for_options(case.options)]
        if case.assertions:
            result.cases_total += 1
            verdicts = {case.passes(answers, context) for answers in per_path}
            if verdicts == {True}:
                result.cases_passed += 1
            elif verdicts == {False}:
                result.gate_failures.append(f"case {case.id} fails")
            else:
                result.cases_unstable.append(case.id)
        if case.reference is not None:
            for index in range(len(paths.paths)):  # a sampled case's answer counts on every path
                answer = per_path[min(index, len(per_path) - 1)][0]
                scored[index].append(QualityScores.of(answer.text, case.reference, case.keywords))
    result.quality = mean_scores(scored[0])
    failures = [gate_failures(mean_scores(path_scores), gates, len(path_scores)) for path_scores in scored]
    result.gate_failures += failures[0]
    if any(bool(f) != bool(failures[0]) for f in failures):
        result.cases_unstable.append("domain quality")
    if unstable_fails and result.cases_unstable:
        result.gate_failures.append(f"unstable: {', '.join(result.cases_unstable)} (--unstable=fail)")


def recommend(results: Sequence[PrecisionResult]) -> PrecisionResult | None:
    """The smallest model on disk among the precisions that pass every gate."""
    passing = [r for r in results if r.passed and "size_mb" in r.measured]
    return min(passing, key=lambda r: float(r.measured["size_mb"])) if passing else None


def table_rows(results: Sequence[PrecisionResult]) -> list[dict[str, Any]]:
    fp32 = next((r.measured.get("size_mb") for r in results if r.precision == "fp32" and r.measured), None)
    rows = []
    for r in results:
        size = r.measured.get("size_mb")
        rows.append({
            "precision": r.precision, **r.measured,
            "size_ratio_fp32": round(size / fp32, 3) if size and fp32 else None,
            "cases_passed": r.cases_passed, "cases_total": r.cases_total, "cases_unstable": r.cases_unstable,
            **{f"quality_{k}": round(v, 3) for k, v in r.quality.items()},
            **{f"parity_{k}": round(v, 4) for k, v in r.parity.items()},
            "passed": r.passed, "reason": r.unavailable or "; ".join(r.gate_failures) or None,
        })
    return rows


COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("precision", "precision", str),
    ("size_mb", "size MB", lambda v: f"{v:.0f}"),
    ("size_ratio_fp32", "x fp32", lambda v: f"{v:.2f}"),
    ("load_s", "load s", lambda v: f"{v:.2f}"),
    ("ttft_s", "TTFT ms", lambda v: f"{v * 1000:.0f}"),
    ("decode_tokens_per_s", "decode tok/s", lambda v: f"{v:.0f}"),
    ("peak_rss_mb", "peak RSS MB", lambda v: f"{v:.0f}"),
    ("quality_token_f1", "token F1", lambda v: f"{v:.2f}"),
    ("parity_ppl_ratio", "ppl ratio", lambda v: f"{v:.3f}"),
    ("parity_kl_mean", "KL mean", lambda v: f"{v:.3f}"),
    ("parity_top1_agreement", "top-1 agree", lambda v: f"{v:.1%}"),
)


def markdown(results: Sequence[PrecisionResult]) -> str:
    rows = table_rows(results)
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " | cases | verdict |",
             "|" + "---|" * (len(COLUMNS) + 2)]
    for row in rows:
        cells = [fmt(row[key]) if row.get(key) is not None else "-" for key, _, fmt in COLUMNS]
        cases = f"{row['cases_passed']}/{row['cases_total']}" if row["cases_total"] else "-"
        if row["cases_unstable"]:
            cases += f" ({len(row['cases_unstable'])} unstable)"
        verdict = "pass" if row["passed"] else f"fail: {row['reason']}"
        lines.append("| " + " | ".join([*cells, cases, verdict]) + " |")
    best = recommend(results)
    lines.append("")
    lines.append(f"Recommendation: **{best.precision}**, the smallest precision that passes every quality gate."
                 if best else "Recommendation: none; no precision passes every quality gate.")
    return "\n".join(lines) + "\n"


def measure_precision(precision: str, build: Callable[[str], PreparedModel],
                      paths: Callable[[PreparedModel], AbstractContextManager[ComputePaths]], cases: CaseSet,
                      gates: Gates, reference: ReferenceData, ep: str, unstable_fails: bool) -> PrecisionResult:
    """One row of the comparison: ``precision`` built, measured in a fresh process (size, load time, speed, memory),
    its cases and domain quality judged on its compute paths (``paths``), and its parity with the fp32 reference;
    a precision that cannot be built or run here is a row with the reason."""
    result = PrecisionResult(precision)
    try:
        model = build(precision)
        result.measured = probe(model.path, ep)
    except (BuildError, RuntimeFailure) as exc:  # reported in the table, with the reason
        result.unavailable = str(exc)
        return result
    with paths(model) as compute_paths:
        evaluate_cases(compute_paths, cases, gates, result, unstable_fails=unstable_fails)
        # A parity reference exists only for a runtime with logits (harness_parity_reference skips otherwise).
        assert isinstance(compute_paths.primary, LogitsRuntime)
        parity = measure_parity(compute_paths.primary, reference)
        result.parity = {name: getattr(parity.overall, name) for name in PARITY_FIGURES}
        result.gate_failures += parity.failures(gates)
    return result


def report_precisions(results: Sequence[PrecisionResult],
                      run_dir: Path) -> tuple[str, list[dict[str, Any]], PrecisionResult | None]:
    """The comparison written to the run's folder (precisions.md, precisions.json): its markdown table, its rows, and
    the recommended precision (None: no precision passes every quality gate)."""
    table = markdown(results)
    (run_dir / "precisions.md").write_text(table, encoding="utf-8")
    (run_dir / "precisions.json").write_text(json.dumps(table_rows(results), indent=2), encoding="utf-8")
    return table, table_rows(results), recommend(results)
