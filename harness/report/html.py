"""Self-contained HTML for a run's results and for a history of runs: inline CSS and SVG, no script,
no network, no plotting library.

Plots appear when the results hold their data: latency against prompt length (tests that record
``prompt_tokens`` with ``ttft_s`` / ``latency_s``), RSS over generations (``rss_series_mb``), and the
precision comparison (``precision_table``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 44
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.failed,.error,.regression{color:#b00020;font-weight:bold}
.passed{color:#1b7f2a}.skipped,.xfailed{color:#777}
.unstable{color:#a05a00;font-weight:bold}pre{white-space:pre-wrap;background:#f6f6f6;padding:6px;font-size:13px}
figure{margin:1.5em 0}figcaption{font-weight:bold}
svg text{font-size:11px;fill:#333}.axis{stroke:#888}.grid{stroke:#eee}code{font-size:13px}
"""


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    return [first + i * step for i in range(math.ceil((high - first) / step) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def line_chart(chart_id: str, title: str, x_label: str, y_label: str, series: Sequence[Series],
               x_names: Mapping[float, str] | None = None, from_zero: bool = True) -> str:
    """An SVG line chart; every point is a circle with a tooltip, every series a polyline. ``from_zero``
    False fits the y axis to the data (to see a drift of a few MB on a plateau of hundreds)."""
    points = [p for s in series for p in s.points]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_ticks = sorted(x_names) if x_names else _ticks(min(xs), max(xs))
    y_ticks = _ticks(min(0.0, *ys) if from_zero else min(ys), max(ys))
    x0, x1, y0, y1 = min(x_ticks), max(x_ticks), min(y_ticks), max(y_ticks)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / ((x1 - x0) or 1) * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - (y - y0) / ((y1 - y0) or 1) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT + 18 * len(series)}" '
             f'role="img" aria-label="{escape(title)}" data-series="{len(series)}">']
    for y in y_ticks:
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}"/>'
                     f'<text x="{LEFT - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{_fmt(y)}</text>')
    for x in x_ticks:
        name = escape(x_names[x]) if x_names else _fmt(x)
        parts.append(f'<text x="{sx(x):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{name}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
                 f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}"/>'
                 f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">{escape(x_label)}</text>'
                 f'<text x="14" y="{TOP + plot_h / 2}" transform="rotate(-90 14 {TOP + plot_h / 2})" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for index, line in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        ordered = sorted(line.points)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ordered)
        parts.append(f'<polyline class="series" data-label="{escape(line.label)}" fill="none" stroke="{color}" '
                     f'stroke-width="2" points="{path}"/>')
        parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"><title>{escape(line.label)}: '
                  f'{_fmt(x)}, {_fmt(y)}</title></circle>' for x, y in ordered]
        legend_y = HEIGHT + 18 * index + 4
        parts.append(f'<rect x="{LEFT}" y="{legend_y}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{LEFT + 18}" y="{legend_y + 10}">{escape(line.label)}</text>')
    parts.append("</svg>")
    return _figure(chart_id, title, "".join(parts))


def bar_chart(chart_id: str, title: str, y_label: str, bars: Sequence[tuple[str, float, bool]]) -> str:
    """An SVG bar chart of (name, value, passed) bars; bars that did not pass are hatched red."""
    y_ticks = _ticks(0.0, max(v for _, v, _ in bars))
    top = max(y_ticks)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(bars)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
             f'aria-label="{escape(title)}" data-bars="{len(bars)}">']
    for y in y_ticks:
        pos = TOP + plot_h - y / top * plot_h
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{pos:.1f}" y2="{pos:.1f}"/>'
                     f'<text x="{LEFT - 6}" y="{pos + 4:.1f}" text-anchor="end">{_fmt(y)}</text>')
    for index, (name, value, passed) in enumerate(bars):
        height = value / top * plot_h
        x = LEFT + index * slot + slot * 0.2
        color = PALETTE[0] if passed else PALETTE[1]
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{TOP + plot_h - height:.1f}" width="{slot * 0.6:.1f}" '
                     f'height="{height:.1f}" fill="{color}"><title>{escape(name)}: {_fmt(value)}'
                     f'{"" if passed else " (did not pass)"}</title></rect>'
                     f'<text x="{x + slot * 0.3:.1f}" y="{TOP + plot_h + 16}" '
                     f'text-anchor="middle">{escape(name)}</text>'
                     f'<text x="{x + slot * 0.3:.1f}" y="{TOP + plot_h - height - 4:.1f}" '
                     f'text-anchor="middle">{_fmt(value)}</text>')
    if not all(passed for _, _, passed in bars):
        parts.append(f'<text x="{WIDTH - RIGHT}" y="14" text-anchor="end" fill="{PALETTE[1]}">red: did not pass '
                     "its gates</text>")
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
                 f'<text x="14" y="{TOP + plot_h / 2}" transform="rotate(-90 14 {TOP + plot_h / 2})" '
                 f'text-anchor="middle">{escape(y_label)}</text></svg>')
    return _figure(chart_id, title, "".join(parts))


def _figure(chart_id: str, title: str, svg: str) -> str:
    return f'<figure class="plot" id="{escape(chart_id)}"><figcaption>{escape(title)}</figcaption>{svg}</figure>'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] | None = None) -> str:
    """An HTML table; numbers right-aligned, ``classes`` (one per row) on the first cell."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        cells = []
        for position, cell in enumerate(row):
            number = isinstance(cell, int | float) and not isinstance(cell, bool)
            css = ["num"] if number else []
            if position == 0 and classes:
                css.append(classes[index])
            attr = f' class="{" ".join(css)}"' if css else ""
            text = _fmt(cell) if isinstance(cell, float) else str(cell if cell is not None else "")
            cells.append(f"<td{attr}>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


# -- a run's report --------------------------------------------------------------------------------
def _numbers(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def latency_plot(tests: Sequence[Mapping[str, Any]]) -> str:
    """TTFT and end-to-end latency against prompt length, one series per test function and metric."""
    series: dict[str, list[tuple[float, float]]] = {}
    for test in tests:
        metrics = test.get("metrics", {})
        if not _numbers(metrics.get("prompt_tokens")):
            continue
        function = str(test["id"]).split("[", 1)[0]
        for metric in ("ttft_s", "latency_s"):
            if metric == "latency_s" and metrics.get("output_tokens", 2) == 1:
                continue  # the latency of one token is its TTFT
            if _numbers(metrics.get(metric)):
                series.setdefault(f"{metric} ({function})", []).append((metrics["prompt_tokens"], metrics[metric]))
    if not series:
        return ""
    return line_chart("plot-latency", "Latency against prompt length", "prompt tokens", "seconds",
                      [Series(label, points) for label, points in sorted(series.items())])


def rss_plot(tests: Sequence[Mapping[str, Any]]) -> str:
    lines = [Series(str(test["id"]), list(enumerate(test["series"]["rss_series_mb"], start=1)))
             for test in tests if test.get("series", {}).get("rss_series_mb")]
    if not lines:
        return ""
    return line_chart("plot-rss", "Resident memory over generations", "generation", "RSS (MB)", lines,
                      from_zero=False)


def precision_plots(tests: Sequence[Mapping[str, Any]]) -> str:
    rows = next((t["properties"]["precision_table"] for t in tests
                 if isinstance(t.get("properties", {}).get("precision_table"), list)), None)
    if not rows:
        return ""
    recommended = next((t["properties"].get("recommended_precision") for t in tests
                        if "recommended_precision" in t.get("properties", {})), None)
    parts = ['<section id="precision"><h2>Precision comparison</h2>']
    if recommended:
        parts.append(f"<p>Recommended precision: <b>{escape(str(recommended))}</b></p>")
    for column, label in (("size_mb", "Size (MB)"), ("decode_tokens_per_s", "Decode tokens/s"),
                          ("ttft_s", "Time to first token (s)"), ("peak_rss_mb", "Peak RSS (MB)")):
        bars = [(str(r.get("precision")), float(r[column]), bool(r.get("passed", True)))
                for r in rows if isinstance(r, Mapping) and _numbers(r.get(column))]
        if bars:
            parts.append(bar_chart(f"plot-precision-{column}", f"{label} by precision", label, bars))
    header = sorted({key for row in rows if isinstance(row, Mapping) for key in row},
                    key=lambda k: (k != "precision", k))
    parts.append(table(header, [[row.get(k) for k in header] for row in rows if isinstance(row, Mapping)]))
    parts.append("</section>")
    return "".join(parts)


def render_run(results: Mapping[str, Any]) -> str:
    """The HTML report of one run's results.json data."""
    run, provenance, totals = results["run"], results.get("provenance", {}), results["totals"]
    tests: list[Mapping[str, Any]] = list(results["tests"])
    title = f"{run['id']}: " + ", ".join(f"{n} {k}" for k, n in totals.items() if n)
    facts = [("model", provenance.get("model")), ("model sha256", provenance.get("source_sha256")),
             ("precision", run.get("precision")), ("builder", provenance.get("builder")),
             ("execution provider", provenance.get("ep")), ("profile", run.get("profile")),
             ("accuracy levels (MatMulNBits nodes)", provenance.get("accuracy_levels")),
             ("fp32-compute twin", provenance.get("twin_model") or "none: the kernels do not depend on the CPU"),
             ("started", run.get("started")), ("exit status", run.get("exit_status")),
             ("machine", ", ".join(f"{k} {v}" for k, v in provenance.get("machine", {}).items())),
             ("packages", ", ".join(f"{k} {v}" for k, v in provenance.get("versions", {}).items()))]
    body = [f"<h1>{escape(title)}</h1>", table(["", ""], facts)]
    baseline = results.get("baseline")
    if baseline:
        body.append(_baseline_section(baseline))
    unstable = [t for t in tests if t["outcome"] == "unstable"]
    if unstable:
        body.append("<section id=\"unstable\"><h2 class=\"unstable\">Unstable verdicts</h2><p>The compute paths "
                    "disagree: each verdict hangs on a near-tie that another CPU may break either way.</p>")
        body += [f"<h3><code>{escape(t['id'])}</code></h3><pre>{escape(t.get('message') or '')}</pre>"
                 for t in unstable]
        body.append("</section>")
    plots = [latency_plot(tests), rss_plot(tests), precision_plots(tests)]
    body += [plot for plot in plots if plot]
    rows = [[t["id"], t["outcome"], round(float(t["duration_s"]), 3),
             ", ".join(f"{k}={_fmt(float(v))}" for k, v in t.get("metrics", {}).items()), _message_cell(t)]
            for t in tests]
    body += ["<h2>Checks</h2>", table(["check", "outcome", "seconds", "metrics", "message"], rows,
                                      [str(t["outcome"]) for t in tests])]
    return page(f"harness report {run['id']}", "".join(body))


def _message_cell(test: Mapping[str, Any]) -> str:
    """The message's first line; for a failed or unstable greedy check, the answer's weakest decisions too."""
    first = (test.get("message") or "").splitlines()[0] if test.get("message") else ""
    weakest = test.get("properties", {}).get("weakest_decisions")
    if test["outcome"] in ("failed", "unstable") and isinstance(weakest, list) and weakest:
        first += f" (weakest decisions: {'; '.join(map(str, weakest[:3]))})"
    return first


def _baseline_section(baseline: Mapping[str, Any]) -> str:
    parts = [f"<section id=\"baseline\"><h2>Compared with {escape(str(baseline.get('baseline')))}</h2>"]
    if not baseline.get("compared"):
        parts.append(f"<p>Not compared: {escape('; '.join(baseline.get('reasons', [])))}</p></section>")
        return "".join(parts)
    rows, classes = [], []
    for d in baseline.get("deltas", []):
        ci = d.get("change_ci")
        rows.append([d["test"], d["metric"], d["baseline"], d["current"], f"{d['change']:+.1%}",
                     f"{ci[0]:+.1%} .. {ci[1]:+.1%}" if ci else "exact", d["verdict"]])
        classes.append(str(d["verdict"]))
    parts.append(table(["check", "metric", "baseline", "this run", "change", "95% CI", "verdict"], rows, classes))
    parts.append("</section>")
    return "".join(parts)


# -- a history of runs -----------------------------------------------------------------------------
def render_history(run_names: Sequence[str], keys: Sequence[str], columns: Sequence[tuple[str, str]],
                   values: Sequence[Sequence[float | None]], legend: Mapping[str, str]) -> str:
    """One line chart per metric (a series per check) over the runs, oldest first."""
    x_names = {float(i): f"{i + 1}·{key}" for i, key in enumerate(keys)}
    charts = []
    for metric in dict.fromkeys(metric for metric, _ in columns):
        series = [Series(test, [(float(i), v) for i, row in enumerate(values) if (v := row[c]) is not None])
                  for c, (name, test) in enumerate(columns) if name == metric]
        series = [s for s in series if s.points]
        if series:
            charts.append(line_chart(f"history-{metric}", f"{metric} over runs", "run · key", metric, series, x_names))
    runs = table(["#", "run", "key"], [[i + 1, name, key] for i, (name, key) in enumerate(zip(run_names, keys,
                                                                                             strict=True))])
    keys_table = table(["key", "properties"], [[letter, text] for letter, text in legend.items()])
    return page("harness history", "<h1>Run history</h1>" + "".join(charts) + runs + keys_table)
