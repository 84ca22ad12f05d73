"""The run report's pieces from synthetic results: HTML plots, summary.md, JUnit XML, the schema."""

from __future__ import annotations

import copy
import itertools
import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import jsonschema
import pytest

from harness import cli
from harness.checks.assertions import AnswerContext
from harness.checks.cases import load_cases
from harness.checks.stability import PathJudgement, PathVerdict
from harness.locations import data_dir
from harness.report.charts import Series, line_chart
from harness.report.compare import Comparison, compare_runs
from harness.report.digest import failure_groups, verdict_of
from harness.report.junit import write_junit
from harness.report.results import CheckRecord
from harness.report.run_page import render_run
from harness.report.runs import FORMAT, Run
from harness.report.summary import summary_markdown
from harness.runtime.protocol import Generation

SCHEMA = json.loads((data_dir() / "schemas" / "results.schema.json").read_text(encoding="utf-8"))
KEY = {"model_sha256": "ab" * 32, "precision": "int4", "ep": "cpu", "machine": "AMD EPYC, 2 cores"}
PRECISIONS = [
    {"precision": "int4", "size_mb": 98.0, "size_ratio_fp32": 0.18, "decode_tokens_per_s": 140.0, "ttft_s": 0.06,
     "peak_rss_mb": 240.0, "passed": True, "reason": ""},
    {"precision": "fp32", "size_mb": 540.0, "size_ratio_fp32": 1.0, "decode_tokens_per_s": 45.0, "ttft_s": 0.2,
     "peak_rss_mb": 700.0, "passed": False, "reason": "slower than the gate"},
]


def check(test_id: str, outcome: str = "passed", message: str | None = None, **props: Any) -> dict[str, Any]:
    record = CheckRecord(f"suites/{test_id}", outcome, 0.5, message, properties=props)
    return record.to_json()


def results(*tests: dict[str, Any], baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    outcomes = [t["outcome"] for t in tests]
    return {
        "format": FORMAT, "schema_version": 2,
        "run": {"id": "20261124-100000-model-int4", "started": "2026-11-24T10:00:00+00:00",
                "finished": "2026-11-24T10:01:00+00:00", "duration_s": 60.0, "exit_status": 1 if "failed" in outcomes
                else 0, "args": ["--model=model"], "profile": "smoke", "precision": "int4", "seed": None,
                "xdist_workers": 0, "report_dir": "/reports/run", "junit_xml": "/reports/run/junit.xml"},
        "key": KEY,
        "provenance": {"model": "/models/model.gguf", "source_kind": "gguf", "source_sha256": "ab" * 32,
                       "precision": "int4", "builder": "olive", "ep": "cpu", "profile": "smoke",
                       "versions": {"onnxruntime-genai": "0.14.1"}, "machine": {"cpu": "AMD EPYC", "cores": "2"}},
        "gates": {"regression_timing_max": {"value": 0.1, "origin": "default", "bound": "max", "unit": ""}},
        "totals": {o: outcomes.count(o) for o in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")},
        "tests": list(tests),
        "baseline": baseline,
    }


def latency(prompt: int, ttft: float, decode: float) -> dict[str, Any]:
    return check(f"test_benchmarks.py::test_generation_latency[prompt={prompt}]", prompt_tokens=prompt, ttft_s=ttft,
                 latency_s=ttft + 0.5, decode_tokens_per_s=decode, decode_tokens_per_s_rounds=[decode] * 5)


class Plots(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, int]] = {}
        self.current = ""
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "figure":
            self.current = str(values["id"])
            self.figures[self.current] = {"circle": 0, "rect": 0, "polyline": 0}
        elif tag in ("circle", "rect", "polyline") and self.current:
            self.figures[self.current][tag] += 1
        href = values.get("href") or ""
        if tag in ("link", "img", "iframe") or "src" in values or "://" in href or href.startswith("//"):
            self.external.append(tag)  # an inline script and relative links to the run's own files are fine

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self.current = ""


def plots(html: str) -> Plots:
    parser = Plots()
    parser.feed(html)
    return parser


def test_properties_are_sorted_into_metrics_series_and_the_rest() -> None:
    record = check("t.py::t", rss_series_mb=[1, 2.5], ttft_s=0.1, rounds=5, passed=True, table=[{"a": 1}],
                   bad=float("inf"), mixed=[1, "x"], empty=[])
    assert record["metrics"] == {"ttft_s": 0.1, "rounds": 5}
    assert record["series"] == {"rss_series_mb": [1, 2.5]}
    assert record["properties"] == {"passed": True, "table": [{"a": 1}], "bad": "inf", "mixed": [1, "x"], "empty": []}
    assert record["id"] == "t.py::t" and record["nodeid"] == "suites/t.py::t"


def test_html_has_the_plots_when_the_series_exist() -> None:
    tests = [latency(32, 0.06, 140.0), latency(128, 0.3, 130.0), latency(512, 1.2, 120.0),
             check("test_memory.py::test_rss", rss_series_mb=[200.0 + i for i in range(40)]),
             check("test_precisions.py::test_table", precision_table=PRECISIONS, recommended_precision="int4")]
    html = render_run(results(*tests))
    found = plots(html)
    assert set(found.figures) == {"plot-latency", "plot-rss-generation", "plot-precision-size_mb",
                                  "plot-precision-decode_tokens_per_s", "plot-precision-ttft_s",
                                  "plot-precision-peak_rss_mb"}
    # two series of three points, each with its own marker shape (and one in the legend), so neither hides the other
    assert found.figures["plot-latency"]["polyline"] == 2
    assert found.figures["plot-latency"]["circle"] == 4 and found.figures["plot-latency"]["rect"] == 4
    assert found.figures["plot-rss-generation"]["circle"] == 41
    assert "Resident memory after each generation" in html and "(log scale)" in html
    assert found.figures["plot-precision-size_mb"]["rect"] == 2  # one bar per precision
    assert 'fill="#d62728"><title>fp32: 540 (did not pass)' in html
    assert "Recommended precision: <b>int4</b>" in html
    assert found.external == [], "the report must not load anything"


def test_html_without_series_has_no_plots_and_escapes_text() -> None:
    html = render_run(results(check("t.py::t[<script>]", "failed", "AssertionError: <b>bad</b>")))
    assert plots(html).figures == {}
    assert "t.py::t[<script>]" not in html and "&lt;b&gt;bad&lt;/b&gt;" in html


def test_summary_markdown() -> None:
    slow = Run(Path("b"), {"run": {"id": "b"}, "key": KEY, "tests": [latency(32, 0.06, 100.0)]})
    base = Run(Path("a"), {"run": {"id": "a"}, "key": KEY, "tests": [latency(32, 0.06, 140.0)]})
    base.data["tests"][0]["series"]["decode_tokens_per_s_rounds"] = [139.0, 140.0, 141.0, 140.5, 139.5]
    comparison = compare_runs(base, slow)
    text = summary_markdown(results(
        latency(32, 0.06, 100.0), check("test_x.py::test_fails", "failed", "AssertionError: verdict\ndata"),
        check("test_precisions.py::test_table", precision_table=PRECISIONS),
        baseline={"path": "a", **comparison.to_dict()}))
    lines = text.splitlines()
    assert lines[0] == "## FAILED: model.gguf int4 (2 passed, 1 failed; 1 regression(s) against a)"
    assert lines.index("### Compared with `a`") < lines.index("### Failures: 1 check, 1 cause")  # after the verdict
    assert "**verdict**" in lines and "1 check: `test_x.py::test_fails`" in lines  # no "AssertionError:"
    assert "| decode tokens/s (median of the benchmarks) | 100 | |" in lines
    assert "| time to first token, 32-token prompt | 60 ms | |" in lines
    assert "Recommended: **none passes every gate**; the table is in `precisions.md`." in text
    assert "### Compared with `a`" in lines and "REGRESSION: b against a" in text and "**regression**" in text
    assert max(len(line) for line in lines if not line.startswith("|")) < 200, "a PR comment must not scroll"


def test_summary_says_why_a_baseline_was_not_compared() -> None:
    comparison = Comparison("reports/", "run", ["none of the 2 other runs in reports/ has this run's key properties"])
    text = summary_markdown(results(check("t.py::t"), baseline={"path": "reports/", **comparison.to_dict()}))
    assert text.startswith("## PASSED")
    assert "not compared with reports/: none of the 2 other runs" in text


def test_junit(tmp_path: Path) -> None:
    data = results(latency(32, 0.06, 140.0), check("test_x.py::test_fails", "failed", "AssertionError: verdict"),
                   check("test_x.py::test_skips", "skipped", "Skipped: no reference"))
    path = tmp_path / "junit.xml"
    write_junit(path, data, {"suites/test_x.py::test_fails": "full traceback\nAssertionError: verdict"})
    suite = ElementTree.parse(path).getroot().find("testsuite")
    assert suite is not None
    counts = (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors"))
    assert counts == ("3", "1", "1", "0")
    case = suite.find("testcase[@name='test_fails']")
    assert case is not None and case.get("classname") == "suites.test_x"
    failure = case.find("failure")
    assert failure is not None and failure.get("message") == "AssertionError: verdict"
    assert failure.text == "full traceback\nAssertionError: verdict"
    bench = suite.find("testcase[@name='test_generation_latency[prompt=32]']/properties")
    assert bench is not None and {p.get("name") for p in bench} >= {"ttft_s", "decode_tokens_per_s"}


def test_junit_carries_the_comparisons_outcomes(tmp_path: Path) -> None:
    """A CI that reads JUnit alone sees regressed and inconclusive, as it sees unstable."""
    base = latency(32, 0.06, 140.0)
    base["series"]["decode_tokens_per_s_rounds"] = [139.0, 140.0, 141.0, 140.5, 139.5]
    comparison = compare_runs(Run(Path("a"), results(base)), Run(Path("b"), results(latency(32, 0.06, 100.0))))
    path = tmp_path / "junit.xml"
    write_junit(path, results(latency(32, 0.06, 100.0), baseline={"path": "a", **comparison.to_dict()}), {})
    suite = ElementTree.parse(path).getroot().find("testsuite")
    assert suite is not None
    assert suite.find("properties/property[@name='comparison']").get("value") == "regressed"  # type: ignore[union-attr]
    decode = suite.find("testcase/properties/property[@name='compare:decode_tokens_per_s']")
    assert decode is not None and str(decode.get("value")).startswith("regression: ")


def test_schema_accepts_a_run_and_rejects_a_broken_one() -> None:
    comparison = compare_runs(Run(Path("a"), results(latency(32, 0.06, 140.0))),
                              Run(Path("b"), results(latency(32, 0.06, 100.0))))
    good = results(latency(32, 0.06, 140.0), baseline={"path": "a", **comparison.to_dict()})
    jsonschema.validate(json.loads(json.dumps(good)), SCHEMA)
    broken = copy.deepcopy(good)
    broken["tests"][0]["metrics"]["ttft_s"] = "fast"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)
    del good["key"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(good, SCHEMA)


def test_failures_that_share_a_cause_are_one_group() -> None:
    """A wrong PromptTemplate fails a template check per role and edge case: one cause, its instances under it."""
    template = [check(f"test_template.py::test_entry_renders_like_the_chat_template[{role}-{case}]", "failed",
                      f"PromptTemplate '{role}' does not render what the chat template renders for content '{case}'")
                for role in ("system", "user", "assistant") for case in ("empty", "braces", "unicode")]
    other = check("test_generation.py::test_stops", "failed", "AssertionError: 128 tokens, the answer never stopped")
    groups = failure_groups([*template, other, check("t.py::fine")])
    assert [len(group.tests) for group in groups] == [9, 1]
    assert groups[0].title == ("PromptTemplate 'system' does not render what the chat template renders for "
                               "content 'empty'")
    html = render_run(results(*template, other))
    assert "Failures: 10 checks, 2 causes" in html and "the other 8 checks with this cause" in html


def test_summary_shows_what_a_traceback_says_in_a_fence_it_cannot_close() -> None:
    traceback = "\n".join([*(f"    line {i} of the test's source" for i in range(20)),
                           "E       AssertionError: the answer was ```python\nE       print(1)```",
                           "E       " + "x" * 300, "", "suites/test_x.py:14: AssertionError"])
    failed = check("test_x.py::test_fails", "failed", "AssertionError: the answer was")
    failed["details"] = traceback
    text = summary_markdown(results(failed))
    assert "line 3 of the test's source" not in text and "\nthe answer was ```python" in text
    assert "````text" in text and text.count("````") == 2  # one backtick more than the answer's own fence
    assert max(len(line) for line in text.splitlines() if not line.startswith("|")) <= 200
    assert "(suites/test_x.py:14: AssertionError)" in text


def test_a_run_without_checks_is_not_a_pass() -> None:
    data = results()
    data["run"]["exit_status"] = 5
    assert verdict_of(data).headline == "NO CHECKS RAN" and verdict_of(data).word == "failed"


def test_two_findings_of_one_kind_stay_two() -> None:
    record = check("t.py::t", **{"harness_finding:leak#1": "first", "harness_finding:leak#2": "second"})
    assert record["findings"] == [{"kind": "leak", "text": "first"}, {"kind": "leak", "text": "second"}]


ROLES = {"harness_finding:special-token-injection#1": "user text CAN switch roles in this runtime"}


@pytest.mark.parametrize(("tests", "word", "headline"), [
    ([check("t.py::injection", **ROLES), check("t.py::other")], "findings", "PASSED with 1 finding"),
    ([check("t.py::injection", **ROLES), check("t.py::near", "unstable")], "unstable",
     "PASSED with unstable verdicts and 1 finding"),
    ([check("t.py::injection", **ROLES), check("t.py::fails", "failed", "no")], "failed", "FAILED"),
    ([check("t.py::plain")], "passed", "PASSED"),
])
def test_a_finding_counts_in_the_verdict_and_is_never_green(tests: list[dict[str, Any]], word: str,
                                                             headline: str) -> None:
    data = results(*tests)
    data["totals"]["unstable"] = sum(test["outcome"] == "unstable" for test in tests)
    assert (verdict_of(data).word, verdict_of(data).headline) == (word, headline)
    assert summary_markdown(data).startswith(f"## {headline}: ")
    page = render_run(data, [])
    assert f'<div id="verdict" class="banner {word}">{headline}' in page
    finding_cells = re.findall(r'<td class="([^"]+)">passed, 1 finding</td>', page)
    assert finding_cells == (["findings"] if any(t["findings"] for t in tests) else [])  # amber, not "passed"


# -- what a reader sees: plots that do not mislead, tables that read, red FAIL lines, every answer ---------------------
def gate(value: float, bound: str = "max", unit: str = "") -> dict[str, Any]:
    return {"value": value, "origin": "default", "bound": bound, "unit": unit}


def figure_of(html: str, figure_id: str) -> str:
    start = html.index(f'<figure class="plot" id="{figure_id}"')
    return html[start:html.index("</figure>", start)]


def section_of(html: str, section_id: str) -> str:
    start = html.index(f'<section id="{section_id}">')
    return html[start:html.index("</section>", start)]


def y_ticks(svg: str) -> dict[float, float]:
    """The y axis's tick values, each with its height in the SVG."""
    return {float(value): float(y) - 4 for y, value in re.findall(r'<text x="66" y="([\d.]+)" text-anchor="end">'
                                                                  r"(-?[\d.]+)</text>", svg)}


def test_a_flat_memory_line_draws_flat_inside_the_band_its_gate_allows() -> None:
    flat = [480.0 + min(i, 5) * 0.5 + 0.02 * (i % 3) for i in range(46)]  # a warm-up, then 0.04 MB of noise
    data = results(check("test_memory.py::test_reused_generator_memory_reaches_a_plateau", rss_series_mb=flat,
                         warmup=6, unit="generation"))
    data["gates"]["memory_tail_growth_mb_max"] = gate(0.5, unit=" MB")
    svg = figure_of(render_run(data), "plot-rss-generation")
    ticks = y_ticks(svg)
    assert max(ticks) - min(ticks) >= 0.02 * max(flat)  # not the 2.5 MB of the data, where noise looks like a trend
    (band,) = re.findall(r'<rect class="band"[^>]*><title>reused generator: ([\d.]+) to ([\d.]+)</title>', svg)
    low, high = map(float, band)
    tail = flat[-20:]  # the last half of the 40 points after the warm-up: what the gate judges
    assert high - low == pytest.approx(0.5, abs=0.05) and low <= min(tail) and max(tail) <= high
    assert "shaded: the 0.5 MB growth memory_tail_growth_mb_max allows over the last half" in svg


def test_the_kl_plot_draws_its_gate_where_its_axis_puts_the_limit() -> None:
    data = results(*(check(f"test_parity.py::test_text_within_parity_gates[{name}]", kl_mean=kl)
                     for name, kl in (("wiki", 0.1), ("code", 0.2))))
    data["gates"]["parity_kl_mean_max"] = gate(0.3)
    svg = figure_of(render_run(data), "plot-parity")
    (height,) = re.findall(r'<line class="gate" x1="[\d.]+" x2="[\d.]+" y1="([\d.]+)"', svg)
    assert float(height) == pytest.approx(y_ticks(svg)[0.3], abs=0.1)
    assert "gate parity_kl_mean_max 0.3 (default)" in svg


def test_legends_name_what_was_measured_and_keep_the_check_id_in_a_tooltip() -> None:
    html = render_run(results(latency(32, 0.06, 140.0), latency(128, 0.3, 130.0), check(
        "test_memory.py::test_reused_generator_memory_reaches_a_plateau", rss_series_mb=[200.0, 200.1, 200.0])))
    legends = dict(re.findall(r'<text x="102" y="[\d.]+">([^<]*)<title>([^<]*)</title></text>', html))
    function = "test_benchmarks.py::test_generation_latency"
    assert legends == {"end-to-end latency (generation latency)": f"latency_s of {function}",
                       "time to first token (generation latency)": f"ttft_s of {function}",
                       "reused generator": "test_memory.py::test_reused_generator_memory_reaches_a_plateau"}
    assert not re.findall(r'<text x="102" y="[\d.]+">[^<]*::', html)  # no legend reads as a test id


def test_the_last_axis_label_ends_inside_the_chart() -> None:
    names = {float(i): f"#{i + 1} 11-{20 + i} 10:00" for i in range(7)}
    svg = line_chart("c", "t", "run", "v", [Series("s", [(float(i), 1.0 + i) for i in range(7)])], x_names=names)
    labels = sorted((float(x), text) for x, text in re.findall(
        r'<text x="([\d.]+)" y="[\d.]+" text-anchor="middle">(#[^<]*)</text>', svg))
    assert labels[0][1].startswith("#1 ") and labels[-1][1].startswith("#7 ")  # the newest run named too
    edges = [(x - len(text) * 3.3, x + len(text) * 3.3) for x, text in labels]  # 6.6 px a character at 11 px
    assert edges[0][0] >= 0 and edges[-1][1] <= 720, edges  # inside the chart
    assert all(right <= left for (_, right), (left, _) in itertools.pairwise(edges)), edges  # none on another


def test_the_metrics_table_labels_its_verdict_and_shows_the_headroom() -> None:
    data = results(check("test_quality.py::test_quality", quality_token_f1=0.50),
                   check("test_parity.py::test_whole_eval_set_within_parity_gates", kl_mean=0.31))
    data["gates"].update(quality_token_f1_min=gate(0.55, "min"), parity_kl_mean_max=gate(0.55, unit=" nats"))
    section = section_of(render_run(data), "metrics")
    assert re.findall(r"<th>([^<]*)</th>", section) == ["verdict", "gate", "measured", "limit", "headroom", "check",
                                                       "limit from"]
    assert '<td class="failed verdict">OUTSIDE</td>' in section and '<td class="passed verdict">within</td>' in section
    assert "<td>0.05 (9%) under the minimum</td>" in section and "<td>0.24 nats (44%) below the maximum</td>" in section
    assert re.search(r"td\.verdict[^{]*\{white-space:nowrap\}", render_run(data))  # "within", never "withi/n"


def test_check_ids_wrap_at_their_separators_never_mid_word() -> None:
    test_id = "test_template.py::test_entry_renders_like_the_chat_template[system-plain]"
    html = render_run(results(check(test_id, "failed", "no")))
    codes = re.findall(r'<code class="id">(.*?)</code>', html)
    assert len(codes) == 2 and all(code.replace("<wbr>", "") == test_id for code in codes)  # failures and checks
    assert codes[0].startswith("test_<wbr>template.py::<wbr>test_<wbr>entry_<wbr>renders_<wbr>")
    assert all(before in ":_-/" or after == "[" for code in codes for before, after in re.findall(r"(.)<wbr>(.)", code))
    assert re.search(r"code\.id\{overflow-wrap:normal;word-break:normal\}", html)  # no breaking anywhere in them


def test_provenance_has_no_blank_header_and_writes_values_out() -> None:
    data = results(check("t.py::t"))
    data["provenance"]["accuracy_levels"] = {"4": 151, "0": 2}
    section = section_of(render_run(data), "provenance")
    assert "<th>" not in section and "<thead>" not in section
    assert "<td>4: 151; 0: 2</td>" in section and "{" not in section


def test_the_lines_of_a_failure_that_say_what_failed_are_red(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text('cases:\n  - id: capital\n    prompt: "The capital of France is"\n    assert:\n'
                     "      - {type: icontains, value: paris}\n      - {type: contains, value: Lyon}\n",
                     encoding="utf-8")
    (case,) = load_cases([cases]).cases
    answer = Generation((1,), (76, 121, 111, 110), "Lyon", "length", 0.0, (0.0,) * 4, 0.0)
    score, lines = case.judge(answer, AnswerContext((2,), 256, (), ()))
    detail = "\n".join([f"case 'capital' ({case.origin}) failed: score {score:.2f} below its threshold "
                        f"{case.threshold:.2f}", "  answer: 'Lyon'", *lines])  # as suites/test_cases.py words it
    verdict = PathVerdict((PathJudgement("as built", False, detail, (answer,)),
                           PathJudgement("fp32-compute twin", False, detail, (answer,))))
    failed = check("test_cases.py::test_case[capital]", "failed", "case 'capital' failed")
    failed["details"] = verdict.explain(lambda ids: "".join(map(chr, ids)))
    failures = section_of(render_run(results(failed)), "failures")
    red = [unescape(line).strip() for line in re.findall(r'<span class="fail-line">(.*?)</span>', failures)]
    assert red == [f"case 'capital' ({case.origin}) failed: score 0.50 below its threshold 1.00",
                   "FAIL icontains 'paris': missing ['paris']",
                   "fails on the fp32-compute twin path too, with the same answer"]
    assert "\n  answer: &#x27;Lyon&#x27;\n" in failures and "\n  ok   contains" in failures  # the rest stays plain


def test_an_opened_check_shows_what_the_model_read_and_what_it_answered() -> None:
    passed = check("test_generation.py::test_answers[capital]")
    passed["answers"] = [{"prompt": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                    "Capital of France?<|im_end|>\n<|im_start|>assistant\n",
                          "answer": "Paris <b>!</b>", "stop_reason": "eos", "output_tokens": 5}]
    older = check("test_generation.py::test_older")
    older.pop("answers", None)  # a results.json written before answers were stored
    html = render_run(results(passed, older))
    rows = section_of(html, "all-checks").split('<tr data-outcome="passed"')[1:]
    assert ('<details><summary>1 answer</summary><div class="answer"><b>prompt</b> (what the model read)'
            '<pre class="prompt">&lt;|im_start|&gt;system\nYou are a helpful assistant.&lt;|im_end|&gt;\n') in rows[0]
    assert '<b>answer</b> (eos, 5 tokens)<pre class="answer-text">Paris &lt;b&gt;!&lt;/b&gt;</pre>' in rows[0]
    assert "answer" not in rows[1].replace("test_answers", "")


def test_history_names_its_lines_labels_the_newest_run_and_keeps_noise_small(tmp_path: Path) -> None:
    decode = [140.0 + (0.5 if day % 2 else -0.5) for day in range(17)]  # 0.7% of noise
    for day, value in enumerate(decode, start=1):
        data = results(latency(32, 0.06, value))
        data["run"]["started"] = f"2026-11-{day:02d}T10:00:00+00:00"
        (tmp_path / f"run-{day:02d}").mkdir()
        (tmp_path / f"run-{day:02d}" / "results.json").write_text(json.dumps(data), encoding="utf-8")
    assert cli.main(["history", str(tmp_path)]) == cli.EXIT_OK
    svg = figure_of((tmp_path / "history.html").read_text(encoding="utf-8"), "history-decode_tokens_per_s")
    assert ('<text x="102" y="314">generation latency (prompt=32), key A, smoke profile<title>test_benchmarks.py::'
            "test_generation_latency[prompt=32]</title></text>") in svg
    labels = sorted((float(x), text) for x, text in re.findall(
        r'<text x="([\d.]+)" y="[\d.]+" text-anchor="middle">(#[^<]*)</text>', svg))
    # the newest run is named; #14 is not: #17's label, pulled inside the chart, would lie on it
    assert [text.split()[0] for _, text in labels] == ["#2", "#5", "#8", "#11", "#17"]
    assert all(float(x) + len(text) * 3.3 <= 720 for x, text in labels)
    assert max(float(x) for x in re.findall(r'<circle cx="([\d.]+)" cy="[\d.]+" r="3.5" fill="#1f77b4"><title>'
                                            r"generation", svg)) <= 704  # every run inside the plot, the last too
    ticks = y_ticks(svg)  # 0.7% of noise against a 10% regression limit: an axis of at least 20%
    assert max(ticks) - min(ticks) >= 2 * 0.1 * max(decode)
