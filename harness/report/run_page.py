"""``report.html``: one run, verdict first.

In order: the verdict banner; the failures, grouped by cause, with their full text; the findings (reported
findings, known runtime issues, unstable verdicts, greedy divergence); the metrics against their gates; the
plots; the baseline comparison; the gates; the provenance with durations, cache status and links to the run's
artefacts; and every check, filterable by outcome and suite and searchable, each opening in place.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from harness.checks import memory
from harness.checks.lengths import allowed_factor
from harness.report import digest
from harness.report.charts import Band, Series, bar_chart, fmt, line_chart
from harness.report.compare import percent_change, percent_interval
from harness.report.html import SCRIPT, check_label, identifier, page, table
from harness.runtime.protocol import finite_number
from harness.text import plural

Test = Mapping[str, Any]
TPOT_GATE = "length_tpot_growth_per_1k_max"
TAIL_GATE = "memory_tail_growth_mb_max"  # the growth a memory check allows over the last half of its run
# The narrowest RSS axis: 2% of the level (RSS steps by up to 0.9 MB on a plateau of hundreds, measured, and draws
# flat then) or 4 times the gate's allowance (its band then fills at most a quarter of the height, and a line that
# leaves it is seen to), whichever is wider. A 64 KB/generation leak (2.5 MB over the smoke profile) still rises a
# quarter of a 500 MB level's axis.
RSS_MIN_SPAN_SHARE, RSS_MIN_SPAN_ALLOWANCES = 0.02, 4
METRIC_WORDS = {"ttft_s": "time to first token", "latency_s": "end-to-end latency"}
# Lines of a failure's text that say what failed: a case's FAIL lines, a verdict's FAILED or REGRESSION, a case
# that failed on a compute path (harness.checks.stability.PathVerdict) and the other paths it fails on.
FAILING_LINE = re.compile(r"^\s*(?:FAIL(?:ED)?\b|REGRESS(?:ION|ED)\b|case .+ failed: |fails on the |why it fails on )")
# What one point of an RSS series is, by the unit the memory suite records.
UNIT_LABELS = {"generation": "generation", "load cycle": "model load / unload cycle",
               "Foundry Local cycle": "Foundry Local session cycle"}


def _numbers(value: Any) -> bool:
    return finite_number(value)


def _href(path: str) -> str:
    """A relative link to one of the run's files (URL-quoted: a name may hold # or ?)."""
    return escape("./" + quote(path))


def _outcome_cell(test: Test) -> str:
    """A check's outcome; one that reported findings says how many, in amber, never in a pass's green."""
    outcome, found = str(test["outcome"]), len(test.get("findings", []))
    if not found:
        return f'<td class="{escape(outcome)}">{escape(outcome)}</td>'
    return f'<td class="findings">{escape(outcome)}, {plural(found, "finding")}</td>'


def _suite(test: Test) -> str:
    return str(test["id"]).split("::", 1)[0]


# -- sections ---------------------------------------------------------------------------------------
def banner(results: Mapping[str, Any]) -> str:
    verdict = digest.verdict_of(results)
    run, provenance = results["run"], results.get("provenance", {})
    model = str(provenance.get("model_name") or str(provenance.get("model") or "").rsplit("/", 1)[-1])
    return (f'<div id="verdict" class="banner {verdict.word}">{escape(verdict.headline)}'
            f'<small>{escape(verdict.counts)}</small><small>{escape(model)} · {escape(str(run.get("precision")))} · '
            f'profile {escape(str(run.get("profile")))} · {fmt(float(run.get("duration_s", 0)))} s · run '
            f'{escape(str(run["id"]))}</small></div>')


def failures_section(tests: Sequence[Test]) -> str:
    groups = digest.failure_groups(tests)
    if not groups:
        return ""
    failed = sum(len(g.tests) for g in groups)
    parts = [f'<section id="failures"><h2 class="failed">Failures: {plural(failed, "check")}, '
             f'{plural(len(groups), "cause")}</h2>']
    for group in groups:
        parts.append(f'<div class="cause"><h3>{escape(group.title)} <small>({plural(len(group.tests), "check")})'
                     '</small></h3>')
        first, rest = group.tests[0], group.tests[1:]
        parts.append(f"<p>{identifier(str(first['id']))} ({escape(str(first['outcome']))})</p>"
                     + _failure_text(first, group.title))
        if rest:
            parts.append(f"<details><summary>the other {plural(len(rest), 'check')} with this cause</summary>")
            parts += [f"<details><summary>{identifier(str(t['id']))}</summary>{_failure_text(t)}</details>"
                      for t in rest]
            parts.append("</details>")
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def failure_pre(text: str) -> str:
    """A failure's text, its lines that say what failed (``FAILING_LINE``) in red."""
    lines = [f'<span class="fail-line">{escape(line)}</span>' if FAILING_LINE.match(line) else escape(line)
             for line in text.split("\n")]
    return "<pre>" + "\n".join(lines) + "</pre>"


def _failure_text(test: Test, heading: str = "") -> str:
    """What the failure says (without the line its cause's ``heading`` says); the whole traceback one click away."""
    said, full = digest.under_heading(test, heading), digest.full_text(test)
    more = f"<details><summary>full text</summary>{failure_pre(full)}</details>" if said != full else ""
    return failure_pre(said) + more


def findings_section(results: Mapping[str, Any]) -> str:
    found = digest.findings_of(results)
    if not found:
        return ""
    parts = [f'<section id="findings"><h2 class="unstable">Findings ({len(found)})</h2>'
             "<p>What the checks found that their outcome alone does not say: each shows here whether the check "
             "passed or not.</p>"]
    parts += [f'<div class="finding"><b>{escape(f.kind)}</b> · {identifier(f.check)} '
              f'(<span class="{"findings" if f.outcome == "passed" else escape(f.outcome)}">{escape(f.outcome)}</span>)'
              f'<pre>{escape(f.text)}</pre></div>'
              for f in found]
    parts.append("</section>")
    return "".join(parts)


def headroom(metric: digest.GatedMetric) -> str:
    """How far the measured value lies from its limit, and on which side: "0.05 (9%) under the minimum"."""
    gap = abs(metric.measured - metric.limit)
    if gap == 0:
        return "at the limit"
    share = gap / abs(metric.limit) if metric.limit else None
    percent = "" if share is None else f" ({share:.0%})" if share >= 0.01 else " (<1%)"
    side = ("below the maximum" if metric.within else "over the maximum") if metric.bound == "max" else \
        ("above the minimum" if metric.within else "under the minimum")
    return f"{fmt(gap)}{metric.unit}{percent} {side}"


def gated_metrics_section(results: Mapping[str, Any]) -> str:
    gated = digest.gated_metrics(results)
    if not gated:
        return ""
    rows = [["within" if m.within else "OUTSIDE", identifier(m.gate), m.measured,
             f"{'at most' if m.bound == 'max' else 'at least'} {fmt(m.limit)}{m.unit}", headroom(m),
             identifier(m.check), m.origin] for m in gated]
    return ('<section id="metrics"><h2>Metrics against their gates</h2><p>Each gate at its worst over the checks '
            "that measured it.</p>" + table(["verdict", "gate", "measured", "limit", "headroom", "check", "limit from"],
                                            rows, [f"{'passed' if m.within else 'failed'} verdict" for m in gated])
            + "</section>")


def gates_section(results: Mapping[str, Any]) -> str:
    gates = results.get("gates", {})
    rows = [[name, f"{'≤' if g['bound'] == 'max' else '≥'} {fmt(float(g['value']))}{g.get('unit', '')}", g["origin"]]
            for name, g in sorted(gates.items())]
    return ('<section id="gates"><details><summary><h2 style="display:inline">Gates</h2> '
            f"({len(rows)}: value and where it comes from)</summary>" + table(["gate", "limit", "source"], rows)
            + "</details></section>")


def provenance_section(results: Mapping[str, Any], artefacts: Sequence[str]) -> str:
    run, provenance = results["run"], results.get("provenance", {})
    cache, build = provenance.get("cache_hit"), provenance.get("build_seconds")
    levels = provenance.get("accuracy_levels")
    if provenance.get("builder") is None:
        cache_status = "not needed (a prebuilt ONNX model)"
    elif cache is None:
        cache_status = "the model was not prepared in this run"
    else:
        cache_status = "hit" if cache else f"miss: built in {fmt(float(build or 0))} s"
    facts = [("model", provenance.get("model")), ("model sha256", provenance.get("source_sha256")),
             ("precision", run.get("precision")), ("builder", provenance.get("builder_detail")
                                                  or provenance.get("builder")),
             ("execution provider", provenance.get("ep")), ("profile", run.get("profile")),
             ("cache", cache_status),
             ("accuracy levels (MatMulNBits nodes)", "none" if levels == {} else levels),
             ("fp32-compute twin", provenance.get("twin_model") or "none: the kernels do not depend on the CPU"),
             ("started", run.get("started")), ("finished", run.get("finished")),
             ("duration", f"{fmt(float(run.get('duration_s', 0)))} s"), ("exit status", str(run.get("exit_status"))),
             ("command", " ".join(["pytest", *map(str, run.get("args", []))])),
             ("machine", ", ".join(f"{k} {v}" for k, v in provenance.get("machine", {}).items())),
             ("packages", ", ".join(f"{k} {v}" for k, v in provenance.get("versions", {}).items()))]
    links = " · ".join(f'<a href="{_href(name)}">{escape(name)}</a>' for name in artefacts)
    return ('<section id="provenance"><h2>Provenance</h2>' + (f"<p>This run's files: {links}</p>" if links else "")
            + table([], facts, ["fact"] * len(facts)) + "</section>")


def baseline_section(baseline: Mapping[str, Any]) -> str:
    parts = [f"<section id=\"baseline\"><h2>Compared with {escape(str(baseline.get('baseline')))}</h2>"]
    if not baseline.get("compared"):
        parts.append(f"<p class=\"inconclusive\">Not compared: {escape('; '.join(baseline.get('reasons', [])))}</p>"
                     "</section>")
        return "".join(parts)
    if baseline.get("broken"):
        items = "".join(f"<li>{escape(str(line))}</li>" for line in baseline["broken"])
        parts.append(f"<p class=\"regressed\">Checks that passed in the baseline and fail now:</p><ul>{items}</ul>")
    order = ("regression", "inconclusive", "improvement", "within", "unchanged")  # unchanged: an older results.json
    deltas = sorted(baseline.get("deltas", []), key=lambda d: order.index(d["verdict"]))
    counts = {verdict: sum(d["verdict"] == verdict for d in deltas) for verdict in order}
    parts.append(f"<p>{len(deltas)} metrics compared: {counts['regression']} worse beyond their limit, "
                 f"{counts['inconclusive']} inconclusive, {counts['improvement']} better, "
                 f"{counts['within'] + counts['unchanged']} within their limit.</p>")
    rows = [[d["verdict"], identifier(str(d["test"])), d["metric"], d["baseline"], d["current"],
             percent_change(d["change"]), percent_interval(d["change_ci"]) if d.get("change_ci") else "exact",
             d.get("note", "")] for d in deltas]
    parts.append(table(["verdict", "check", "metric", "baseline", "this run", "change", "95% CI", "why"], rows,
                       [str(d["verdict"]) for d in deltas]))
    if baseline.get("uncompared"):
        items = "".join(f"<li>{escape(str(reason))}</li>" for reason in baseline["uncompared"])
        parts.append(f"<details><summary>not compared: {len(baseline['uncompared'])}</summary><ul>{items}</ul>"
                     "</details>")
    parts.append("</section>")
    return "".join(parts)


def answers_html(test: Test) -> str:
    """The answers a check recorded (results.json "answers"; none in older files): what the model read, its
    answer, and why it stopped."""
    blocks = []
    for answer in test.get("answers") or ():
        if not isinstance(answer, Mapping):
            continue
        tokens = answer.get("output_tokens")
        stopped = ", ".join(part for part in (str(answer.get("stop_reason") or ""),
                                              plural(tokens, "token") if isinstance(tokens, int) else "") if part)
        blocks.append(f'<div class="answer"><b>prompt</b> (what the model read)<pre class="prompt">'
                      f'{escape(str(answer.get("prompt", "")))}</pre><b>answer</b>'
                      f'{f" ({escape(stopped)})" if stopped else ""}<pre class="answer-text">'
                      f'{escape(str(answer.get("answer", "")))}</pre></div>')
    return "".join(blocks)


def checks_section(tests: Sequence[Test]) -> str:
    outcomes = sorted({str(t["outcome"]) for t in tests})
    suites = sorted({_suite(t) for t in tests})
    options = "".join(f'<option value="{escape(o)}">{escape(o)}</option>' for o in outcomes)
    suite_options = "".join(f'<option value="{escape(s)}">{escape(s)}</option>' for s in suites)
    controls = ('<div class="controls"><label>outcome <select id="filter-outcome" onchange="harnessFilter()">'
                f'<option value="">all</option>{options}</select></label><label>suite <select id="filter-suite" '
                f'onchange="harnessFilter()"><option value="">all</option>{suite_options}</select></label>'
                '<label>search <input id="filter-text" type="search" oninput="harnessFilter()"></label>'
                f'<span id="filter-count">{len(tests)} shown</span></div>')
    rows = []
    for test in tests:
        outcome = str(test["outcome"])
        detail = digest.what_it_says(test) if outcome in digest.BAD_OUTCOMES else str(test.get("message") or "")
        metrics = ", ".join(f"{k}={fmt(float(v))}" for k, v in test.get("metrics", {}).items())
        findings = "".join(f"<p class=\"unstable\">finding: {escape(f['kind'])}: {escape(f['text'])}</p>"
                           for f in test.get("findings", []))
        summary = escape((str(test.get("message") or "")).splitlines()[0] if test.get("message") else "")
        answers = answers_html(test)
        shown = failure_pre(detail) if outcome in digest.BAD_OUTCOMES else f"<pre>{escape(detail)}</pre>"
        body = findings + (shown if detail else "") + answers + \
            (f"<p><code>{escape(metrics)}</code></p>" if metrics else "")
        opener = summary or (plural(len(test.get("answers") or ()), "answer") if answers else "details")
        cell = f"<details><summary>{opener}</summary>{body}</details>" if body else summary
        rows.append(f'<tr data-outcome="{escape(outcome)}" data-suite="{escape(_suite(test))}">'
                    f'<td>{identifier(str(test["id"]))}</td>{_outcome_cell(test)}'
                    f'<td class="num">{float(test["duration_s"]):.3f}</td><td>{cell}</td></tr>')
    return (f'<section id="all-checks"><h2>Checks ({len(tests)})</h2>{controls}<table id="checks"><thead><tr>'
            "<th>check</th><th>outcome</th><th>seconds</th><th>message and details</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></section>")


# -- plots ------------------------------------------------------------------------------------------
def latency_plot(tests: Sequence[Test]) -> str:
    """TTFT and end-to-end latency against prompt length (log scale), one series per check function and metric."""
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for test in tests:
        metrics = test.get("metrics", {})
        if not _numbers(metrics.get("prompt_tokens")) or metrics["prompt_tokens"] <= 0:
            continue
        function = str(test["id"]).split("[", 1)[0]
        for metric in METRIC_WORDS:
            if metric == "latency_s" and metrics.get("output_tokens", 2) == 1:
                continue  # the latency of one token is its TTFT
            if _numbers(metrics.get(metric)):
                series.setdefault((function, metric), []).append((metrics["prompt_tokens"], metrics[metric]))
    if not series:
        return ""
    return line_chart("plot-latency", "Latency against prompt length", "prompt tokens", "seconds",
                      [Series(f"{METRIC_WORDS[metric]} ({check_label(function)})", points, f"{metric} of {function}")
                       for (function, metric), points in sorted(series.items())], log_x=True)


def tpot_plot(tests: Sequence[Test], gates: Mapping[str, Any]) -> str:
    """Decode time per token against prompt length (the length suite's medians), with the limit its gate sets."""
    points = sorted((t["metrics"]["prompt_tokens"], t["metrics"]["tpot_median_s"] * 1e3) for t in tests
                    if _numbers(t.get("metrics", {}).get("tpot_median_s"))
                    and _numbers(t["metrics"].get("prompt_tokens")) and t["metrics"]["prompt_tokens"] > 0)
    if len(points) < 2:
        return ""
    gate = gates.get(TPOT_GATE)
    limit = None
    if gate is not None:
        base_tokens, base = points[0]
        per_1k = float(gate["value"])
        limit = Series(f"gate {TPOT_GATE} = {fmt(per_1k)} ({gate['origin']}): the slowest the longest prompt may "
                       "decode", [(x, base * allowed_factor(per_1k, int(x - base_tokens))) for x, _ in points])
    return line_chart("plot-tpot", "Decode time per token against prompt length", "prompt tokens",
                      "ms per output token (median)", [Series("TPOT (input-length suite)", points)], log_x=True,
                      gate=limit, note="the gate compares the longest prompt with the shortest")


def _allowed_band(values: Sequence[float], warmup: Any, unit: str, allowance: float) -> Band | None:
    """The band the tail gate allows a memory series: ``allowance`` MB, centred on the median of the run's last half
    (the points the gate judges). A steady rise of exactly the allowance over that half spans the band; a plateau
    sits inside it. None when the record does not say where the warm-up ends."""
    if not isinstance(warmup, int) or len(values) - warmup < 2:
        return None
    tail = memory.fit([round(v * memory.MB) for v in values], warmup, unit).tail
    middle = statistics.median(values[-tail:])
    return Band(len(values) - tail + 1, len(values), middle - allowance / 2, middle + allowance / 2)


def rss_plots(tests: Sequence[Test], gates: Mapping[str, Any]) -> str:
    """One plot per kind of point (after a generation, after a load / unload cycle), so series share a unit; each
    series with the band its tail gate allows, on an axis wide enough that noise draws flat (``RSS_MIN_SPAN_*``)."""
    gate = gates.get(TAIL_GATE)
    allowance = float(gate["value"]) if gate is not None else None
    by_unit: dict[str, list[Series]] = {}
    for test in tests:
        values = test.get("series", {}).get("rss_series_mb")
        if not values:
            continue
        unit = str(test.get("properties", {}).get("unit", "generation"))  # as the memory suite records it
        band = None if allowance is None else _allowed_band(values, test.get("metrics", {}).get("warmup"), unit,
                                                            allowance)
        label = check_label(str(test["id"])).removesuffix(" memory reaches a plateau")
        by_unit.setdefault(unit, []).append(Series(label, list(enumerate(values, start=1)), str(test["id"]), band))
    plots = []
    for unit, lines in sorted(by_unit.items()):
        label = UNIT_LABELS.get(unit, unit)
        slug = "-".join(unit.lower().split())
        top = max(y for line in lines for _, y in line.points)
        min_span = max(RSS_MIN_SPAN_SHARE * top, RSS_MIN_SPAN_ALLOWANCES * (allowance or 0.0))
        shaded = "" if gate is None else (f"shaded: the {fmt(float(gate['value']))} MB growth {TAIL_GATE} allows "
                                          "over the last half, around its median")
        plots.append(line_chart(
            f"plot-rss-{slug}", f"Resident memory after each {label}", f"{label} (warm-up included)", "RSS (MB)",
            lines, from_zero=False, min_span=min_span, band_label=shaded,
            note=f"one point: the process's RSS right after a {label}, with freed heap returned; a check's "
                 "peak_rss_mb is the highest RSS sampled during it, prefill buffers included, so it lies above these "
                 "points" + ("" if gate is None else f"; a check fails as a leak only when the last half grows more "
                             f"than {TAIL_GATE} ({gate['origin']}) and its slope is over its gate too")))
    return "".join(plots)


def parity_plot(tests: Sequence[Test], gates: Mapping[str, Any]) -> str:
    """KL(reference || built) per eval text, red where a text fails its parity gates, with the KL gate's line."""
    bars = [(str(t["id"]).split("[", 1)[-1].rstrip("]"), float(t["metrics"]["kl_mean"]), t["outcome"] == "passed")
            for t in tests if "test_text_within_parity_gates" in str(t["id"])
            and _numbers(t.get("metrics", {}).get("kl_mean"))]
    if not bars:
        return ""
    gate = gates.get("parity_kl_mean_max")
    line = (f"gate parity_kl_mean_max {fmt(float(gate['value']))} ({gate['origin']})", float(gate["value"])) \
        if gate else None
    return bar_chart("plot-parity", "Mean KL divergence from the fp32 reference, per eval text", "KL (nats)", bars,
                     "dashed line: the most a text may diverge" if gate else "", gate=line)


def precision_plots(tests: Sequence[Test]) -> str:
    rows, recommended = digest.precision_table(tests)
    if not rows:
        return ""
    parts = ['<section id="precision"><h2>Precision comparison</h2>']
    if recommended:
        parts.append(f"<p>Recommended precision: <b>{escape(str(recommended))}</b></p>")
    for column, label in (("size_mb", "Size (MB)"), ("decode_tokens_per_s", "Decode tokens/s"),
                          ("ttft_s", "Time to first token (s)"), ("peak_rss_mb", "Peak RSS (MB)")):
        bars = [(str(r.get("precision")), float(r[column]), bool(r.get("passed", True)))
                for r in rows if _numbers(r.get(column))]
        if bars:
            parts.append(bar_chart(f"plot-precision-{column}", f"{label} by precision", label, bars))
    header = sorted({key for row in rows for key in row}, key=lambda k: (k != "precision", k))
    parts.append(table(header, [[row.get(k) for k in header] for row in rows]))
    parts.append("</section>")
    return "".join(parts)


def render_run(results: Mapping[str, Any], artefacts: Sequence[str] = ()) -> str:
    """The HTML report of one run's results.json data; ``artefacts``: the run folder's files, linked relatively."""
    tests: list[Test] = list(results["tests"])
    gates = results.get("gates", {})
    plots = "".join([latency_plot(tests), tpot_plot(tests, gates), rss_plots(tests, gates), parity_plot(tests, gates),
                     precision_plots(tests)])
    body = [banner(results), baseline_section(results["baseline"]) if results.get("baseline") else "",
            failures_section(tests), findings_section(results), gated_metrics_section(results),
            f'<section id="plots"><h2>Plots</h2>{plots}</section>' if plots else "",
            gates_section(results), provenance_section(results, artefacts), checks_section(tests)]
    return page(f"harness report {results['run']['id']}: {digest.verdict_of(results).word}", "".join(body), SCRIPT)
