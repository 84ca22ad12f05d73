"""``history.html``: how a reports folder's runs trend. One chart per metric with one line per check (and key):
never a median over whichever checks a run happened to hold, which draws a trend from nothing. Runs are named and
dated on the axis and linked to their reports; runs that failed or regressed are marked; the runs table lists
the newest first, each with its verdict and counts."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.report import digest
from harness.report.charts import Series, line_chart
from harness.report.compare import METRICS, QUALITY_GATE, TIMING_GATE
from harness.report.html import Raw, check_label, page, table
from harness.report.runs import Run

AXIS_LABELS = 8  # at most this many runs labelled on the axis (every run keeps its label in its tooltip)


def _axis_label(index: int, run: Run) -> str:
    """``#n MM-DD HH:MM``: short enough for the axis; the runs table names run #n."""
    started = run.started.replace("T", " ")
    return f"#{index + 1} {started[5:16]}"


def _min_span(metric: str, values: Sequence[float], gates: Mapping[str, Any]) -> float:
    """The narrowest y axis for a metric's trend: twice the worsening its comparison calls a regression
    (regression_timing_max or regression_quality_max of the newest run, a share of the largest value). A regression
    then fills half the height, and run-to-run noise well within the limit draws small, not as a zigzag."""
    spec = METRICS.get(metric)
    if spec is None:
        return 0.0
    gate = TIMING_GATE if spec.kind == "timing" else QUALITY_GATE
    limit = float(gates.get(gate.name, {}).get("value", gate.default))
    return 2 * limit * max(abs(value) for value in values)


def _report_link(run: Run, folder: Path) -> str:
    return "./" + quote(Path(os.path.relpath(run.path.parent / "report.html", folder)).as_posix())


def render_history(runs: Sequence[Run], keys: Sequence[str], columns: Sequence[tuple[str, str]],
                   values: Sequence[Sequence[float | None]], legend: Mapping[str, str], folder: Path) -> str:
    """The history of ``runs`` (oldest first) as written into ``folder``, linking each run's report."""
    x_names = {float(i): _axis_label(i, run) for i, run in enumerate(runs)}
    links = {float(i): _report_link(run, folder) for i, run in enumerate(runs)}
    verdicts = [digest.verdict_of(run.data) for run in runs]
    marked = {float(i): verdict.word for i, verdict in enumerate(verdicts) if verdict.word in ("failed", "regressed")}
    gates = runs[-1].data.get("gates", {})
    charts = []
    for metric in dict.fromkeys(metric for metric, _ in columns):
        # One line per check, key and profile: two machines' timings, or two profiles' checks, do not join.
        lines: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        for c, (name, check) in enumerate(columns):
            if name != metric:
                continue
            for i, (row, key, run) in enumerate(zip(values, keys, runs, strict=True)):
                if (value := row[c]) is not None:
                    profile = str(run.data["run"].get("profile", "?"))
                    lines.setdefault((check, key, profile), []).append((float(i), value))
        if lines:
            charts.append(line_chart(
                f"history-{metric}", f"{metric} over runs", "run (started, UTC)", metric,
                [Series(f"{check_label(check)}, key {key}, {profile} profile", points, check)
                 for (check, key, profile), points in sorted(lines.items())],
                x_names=x_names, links=links, marked=marked, from_zero=False,
                min_span=_min_span(metric, [y for points in lines.values() for _, y in points], gates),
                label_every=math.ceil(len(runs) / AXIS_LABELS),
                note="a line per check and key (machine, model, precision: see the keys below); red dashed line: a "
                     "run that failed or regressed against its baseline; the axis labels link to the runs' reports; "
                     "the axis spans at least twice the change the comparison calls a regression"))
    newest_first = list(reversed(list(enumerate(zip(runs, keys, verdicts, strict=True)))))
    rows = [[i + 1, Raw(f'<a href="{escape(_report_link(run, folder))}">{escape(run.name)}</a>'), run.started,
             f"{key}, {run.data['run'].get('profile', '?')}", verdict.line] for i, (run, key, verdict) in newest_first]
    runs_table = table(["#", "run", "started", "key, profile", "verdict"], rows,
                       [verdict.word for _, (_, _, verdict) in newest_first])
    keys_table = table(["key", "properties"], [[letter, text] for letter, text in legend.items()])
    return page("harness history", f"<h1>Run history: {len(runs)} runs</h1>" + "".join(charts)
                + "<h2>Runs, newest first</h2>" + runs_table + "<h2>Keys</h2>" + keys_table)
