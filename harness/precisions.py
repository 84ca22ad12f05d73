"""The deployment guide's precision comparison, measured: size, speed, memory and quality per
precision, and the smallest precision that passes every quality gate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.cases import CaseSet
from harness.gates import Gates
from harness.output_format import answer_context
from harness.quality import QualityScores, gate_failures, mean_scores
from harness.runtime import Runtime


@dataclass
class PrecisionResult:
    precision: str
    unavailable: str | None = None  # why this precision could not be built or run here
    measured: dict[str, Any] = field(default_factory=dict)  # harness.probe's figures
    cases_passed: int = 0
    cases_total: int = 0
    quality: dict[str, float] = field(default_factory=dict)  # mean scores of golden answers
    parity: dict[str, float] = field(default_factory=dict)  # against the fp32 reference
    gate_failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.unavailable is None and not self.gate_failures


def evaluate_cases(runtime: Runtime, cases: CaseSet, gates: Gates, result: PrecisionResult) -> None:
    """Run every case on ``runtime``: asserted cases must pass, golden answers must meet the gates."""
    context = answer_context(runtime)
    scored = []
    for case in cases:
        answers = [runtime.generate(case.prompt, options) for options in case.sample_options()]
        if case.assertions:
            result.cases_total += 1
            if case.passes(answers, context):
                result.cases_passed += 1
            else:
                result.gate_failures.append(f"case {case.id} fails")
        if case.reference is not None:
            scored.append(QualityScores.of(answers[0].text, case.reference, case.keywords))
    result.quality = mean_scores(scored)
    result.gate_failures += gate_failures(result.quality, gates, len(scored))


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
            "cases_passed": r.cases_passed, "cases_total": r.cases_total,
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
        verdict = "pass" if row["passed"] else f"fail: {row['reason']}"
        lines.append("| " + " | ".join([*cells, cases, verdict]) + " |")
    best = recommend(results)
    lines.append("")
    lines.append(f"Recommendation: **{best.precision}**, the smallest precision that passes every quality gate."
                 if best else "Recommendation: none; no precision passes every quality gate.")
    return "\n".join(lines) + "\n"
