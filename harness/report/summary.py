"""``summary.md``: a run's verdict and its failures, for a CI job summary or a pull-request comment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.report.compare import Comparison, markdown

HEADLINE_METRICS = ("prompt_tokens", "ttft_s", "tpot_s", "prefill_tokens_per_s", "decode_tokens_per_s", "latency_s",
                    "peak_rss_mb")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def summary_markdown(results: Mapping[str, Any]) -> str:
    """A markdown summary for a CI job summary or a pull-request comment."""
    run, provenance, totals = results["run"], results["provenance"], results["totals"]
    tests: list[Mapping[str, Any]] = results["tests"]
    bad = [t for t in tests if t["outcome"] in ("failed", "error", "xpassed")]
    verdict = "FAILED" if run["exit_status"] not in (0, 5) or bad else "PASSED"
    counts = ", ".join(f"{n} {k}" for k, n in totals.items() if n) or "no checks ran"
    sha = str(provenance.get("source_sha256") or "")[:12]
    levels = "/".join(sorted(provenance.get("accuracy_levels") or {})) or "none"
    lines = [f"## {verdict}: {Path(str(provenance.get('model'))).name} {run['precision']} ({counts})", "",
             f"model sha256 `{sha}` · ep {provenance.get('ep')} · profile {run['profile']} · builder "
             f"{provenance.get('builder')} · accuracy level {levels} · cpu "
             f"{provenance.get('machine', {}).get('isa', '?')} · {run['started']} · run `{run['id']}`", ""]
    if bad:
        lines += ["### Failures", "", "| check | verdict |", "|---|---|"]
        lines += [f"| `{t['id']}` | {_cell((t.get('message') or t['outcome']).splitlines()[0])} |" for t in bad]
        lines.append("")
    unstable = [t for t in tests if t["outcome"] == "unstable"]
    if unstable:
        lines += ["### Unstable verdicts", "", "The compute paths disagree: each verdict hangs on a near-tie that "
                  "another CPU may break either way.", ""]
        lines += [f"- `{t['id']}`: {_cell(' '.join((t.get('message') or '').splitlines()[1:2]).strip())}"
                  for t in unstable]
        lines.append("")
    measured = [t for t in tests if "decode_tokens_per_s" in t["metrics"] or "ttft_s" in t["metrics"]]
    if measured:
        lines += ["### Token metrics (medians)", "", "| check | " + " | ".join(HEADLINE_METRICS) + " |",
                  "|---|" + "---:|" * len(HEADLINE_METRICS)]
        lines += [f"| `{t['id']}` | " + " | ".join(_cell(t["metrics"].get(m)) for m in HEADLINE_METRICS) + " |"
                  for t in measured]
        lines.append("")
    table = next((t["properties"]["precision_table"] for t in tests
                  if isinstance(t["properties"].get("precision_table"), list)), None)
    if table:
        columns = list(dict.fromkeys(k for row in table if isinstance(row, Mapping) for k in row))
        lines += ["### Precision comparison", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in table
                  if isinstance(row, Mapping)]
        lines.append("")
    baseline = results.get("baseline")
    if baseline:
        lines.append(markdown(Comparison.from_dict(baseline)))
    return "\n".join(lines).rstrip() + "\n"
