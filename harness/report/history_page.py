"""``history.html``: how a reports folder's runs trend. One chart per metric family with one line (the median
over the checks that measured it in each run), runs named and dated on the axis and linked to their reports,
regressions marked."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from urllib.parse import quote

from harness.report import digest
from harness.report.charts import Series, line_chart
from harness.report.compare import Run
from harness.report.html import Raw, page, table

AXIS_LABELS = 8  # at most this many runs labelled on the axis (every run keeps its label in its tooltip)


def _axis_label(index: int, run: Run) -> str:
    """``#n MM-DD HH:MM``: short enough for the axis; the runs table names run #n."""
    started = run.started.replace("T", " ")
    return f"#{index + 1} {started[5:16]}"


def _report_link(run: Run, folder: Path) -> str:
    return "./" + quote(Path(os.path.relpath(run.path.parent / "report.html", folder)).as_posix())


def render_history(runs: Sequence[Run], keys: Sequence[str], columns: Sequence[tuple[str, str]],
                   values: Sequence[Sequence[float | None]], legend: Mapping[str, str], folder: Path) -> str:
    """The history of ``runs`` (oldest first) as written into ``folder``, linking each run's report."""
    x_names = {float(i): _axis_label(i, run) for i, run in enumerate(runs)}
    links = {float(i): _report_link(run, folder) for i, run in enumerate(runs)}
    verdicts = [digest.verdict_of(run.data) for run in runs]
    marked = [float(i) for i, run in enumerate(runs) if (run.data.get("baseline") or {}).get("regressions")]
    charts = []
    for metric in dict.fromkeys(metric for metric, _ in columns):
        indexes = [c for c, (name, _) in enumerate(columns) if name == metric]
        # One line per key and profile: two machines' timings, or two profiles' sets of checks, do not join.
        lines: dict[str, list[tuple[float, float]]] = {}
        for i, (row, key, run) in enumerate(zip(values, keys, runs, strict=True)):
            present = [value for c in indexes if (value := row[c]) is not None]
            if present:
                group = f"key {key}, {run.data['run'].get('profile', '?')} profile"
                lines.setdefault(group, []).append((float(i), statistics.median(present)))
        if lines:
            charts.append(line_chart(
                f"history-{metric}", f"{metric} over runs", "run (started, UTC)", metric,
                [Series(f"{group}: median over the checks that measure it", points)
                 for group, points in sorted(lines.items())],
                x_names=x_names, links=links, marked=marked, from_zero=False,
                label_every=math.ceil(len(runs) / AXIS_LABELS),
                note="a line per key (machine, model, precision: see the keys below); red dashed line: a run that "
                     "regressed against its baseline; the axis labels link to the runs' reports"))
    rows = [[i + 1, Raw(f'<a href="{escape(_report_link(run, folder))}">{escape(run.name)}</a>'), run.started,
             f"{key}, {run.data['run'].get('profile', '?')}",
             verdict.line] for i, (run, key, verdict) in enumerate(zip(runs, keys, verdicts, strict=True))]
    runs_table = table(["#", "run", "started", "key, profile", "verdict"], rows, [v.word for v in verdicts])
    keys_table = table(["key", "properties"], [[letter, text] for letter, text in legend.items()])
    return page("harness history", f"<h1>Run history: {len(runs)} runs</h1>" + "".join(charts)
                + "<h2>Runs</h2>" + runs_table + "<h2>Keys</h2>" + keys_table)
