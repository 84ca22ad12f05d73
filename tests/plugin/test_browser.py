"""The reports in a real browser: Debian's headless Chromium opens report.html and history.html of real
(fake-model) runs, and a probe page beside them reads what a person would see. Every request the browser
makes goes to a local proxy that counts them: the reports must work offline, so it must count none.

Skips, saying why, where no headless Chromium is installed (``make install`` installs Debian's
``chromium-headless-shell`` where it runs as root).

``HARNESS_README_IMAGES=docs/images`` also saves the README's screenshots of these pages there, 1280 px wide (and
draws the history over 17 runs, not 3); ``tests/e2e/test_template_defects.py`` saves the failing run's, a wrong
PromptTemplate on the default model."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import cli
from tests.plugin.test_reports import BENCHMARKS, CHECKS, DELAY, env, latest, run  # noqa: F401  (env: a fixture)

BROWSERS = ("chromium-headless-shell", "chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--allow-file-access-from-files", "--virtual-time-budget=5000", "--window-size=1280,2400")

README_IMAGES = Path(os.environ["HARNESS_README_IMAGES"]).resolve() if os.environ.get("HARNESS_README_IMAGES") else None
NARROW = 480  # px: a window where check ids must wrap (at their separators)

# Reads the report in the iframe: is each part there and visible (laid out, not hidden), does the filter work, and
# what does a reader see: the tables' words unbroken, the plots' labels inside them, an opened check's answer?
PROBE = """<!DOCTYPE html><html><body><iframe id="page" src="%s" style="width:1280px;height:2400px"></iframe>
<script>
window.addEventListener('load', () => {
  const frame = document.getElementById('page'), d = frame.contentDocument, w = d.defaultView;
  const seen = e => { if (!e || (e.checkVisibility && !e.checkVisibility())) return false;  // a closed <details>
    const r = e.getBoundingClientRect(), s = w.getComputedStyle(e);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const text = sel => (d.querySelector(sel) || {}).textContent || '';
  const text_of = e => e ? e.textContent : '';
  const all = sel => [...d.querySelectorAll(sel)];
  // Where the rendered text of e starts a new line: the character before the break and the one after it.
  const breaks = e => { const found = []; let top = null, before = '';
    const walk = d.createTreeWalker(e, NodeFilter.SHOW_TEXT);
    for (let node = walk.nextNode(); node; node = walk.nextNode()) for (let i = 0; i < node.length; i++) {
      const range = d.createRange(); range.setStart(node, i); range.setEnd(node, i + 1);
      const box = range.getBoundingClientRect();
      if (box.height > 0) { if (top !== null && box.top > top + 2) found.push(before + node.data[i]); top = box.top; }
      before = node.data[i];
    }
    return found; };
  // Texts of an SVG that reach outside its box (rotated axis names aside), as "text: left..right".
  const outside = svg => [...svg.querySelectorAll('text:not([transform])')].map(t => [t, t.getBBox()])
    .filter(([t, b]) => b.x < 0 || b.x + b.width > svg.viewBox.baseVal.width)
    .map(([t, b]) => `${t.textContent}: ${b.x.toFixed(0)}..${(b.x + b.width).toFixed(0)}`);
  // Centred labels of one row (an axis's) that lie on each other, as "left label / right label".
  const overlapping = svg => { const rows = {};
    for (const t of svg.querySelectorAll('text[text-anchor="middle"]:not([transform])'))
      (rows[t.getAttribute('y')] = rows[t.getAttribute('y')] || []).push([t.textContent, t.getBBox()]);
    return Object.values(rows).flatMap(row => row.sort((a, b) => a[1].x - b[1].x).flatMap(([name, box], i) =>
      i && row[i - 1][1].x + row[i - 1][1].width > box.x ? [`${row[i - 1][0]} / ${name}`] : []));
  };
  // Tick labels the rotated axis name lies on (their boxes on the page intersect), as "name / tick".
  const under_axis_name = svg => { const name = svg.querySelector('text[transform]'); if (!name) return [];
    const n = name.getBoundingClientRect();
    return [...svg.querySelectorAll('text[text-anchor="end"]')].filter(t => { const b = t.getBoundingClientRect();
      return b.left < n.right && n.left < b.right && b.top < n.bottom && n.top < b.bottom; })
      .map(t => `${name.textContent} / ${t.textContent}`); };
  const ticks = svg => [...svg.querySelectorAll('text[x="66"][text-anchor="end"]')].map(t => parseFloat(t.textContent));
  const out = {banner: text('#verdict'), banner_seen: seen(d.querySelector('#verdict')),
    banner_colour: d.querySelector('#verdict') ? w.getComputedStyle(d.querySelector('#verdict')).backgroundColor : '',
    failures: text('#failures'), failures_seen: seen(d.querySelector('#failures pre')),
    findings: text('#findings'), findings_seen: seen(d.querySelector('#findings')),
    baseline: text('#baseline'), baseline_seen: seen(d.querySelector('#baseline')),
    sections: [...d.querySelectorAll('section')].filter(seen).sort((a, b) => a.getBoundingClientRect().top -
      b.getBoundingClientRect().top).map(e => e.id),
    plots: [...d.querySelectorAll('figure svg')].filter(seen).length,
    finding_cell: text('#checks td.findings'), finding_cell_colour: d.querySelector('#checks td.findings') ?
      w.getComputedStyle(d.querySelector('#checks td.findings')).color : '',
    links: [...d.querySelectorAll('a')].map(a => a.getAttribute('href')),
    metrics_header: all('#metrics th').map(e => e.textContent),
    provenance_header_cells: all('#provenance th').length, provenance: text('#provenance table'),
    fail_lines: all('#failures .fail-line').filter(seen).map(e => [e.textContent.trim(), w.getComputedStyle(e).color]),
    outside: all('figure svg').flatMap(outside), overlapping: all('figure svg').flatMap(overlapping),
    under_axis_name: all('figure svg').flatMap(under_axis_name),
    legends: all('figure svg g.legend text').map(t => [t.firstChild.textContent, text_of(t.querySelector('title'))])};
  const rss = d.querySelector('#plot-rss-load-cycle svg');
  if (rss) {
    const y = ticks(rss), band = rss.querySelector('rect.band');
    out.rss_span = Math.max(...y) - Math.min(...y); out.rss_band_seen = seen(band);
    if (band) {
      const [x0, y0] = [+band.getAttribute('x'), +band.getAttribute('y')];
      const [x1, y1] = [x0 + +band.getAttribute('width'), y0 + +band.getAttribute('height')];
      const line = rss.querySelector(`polyline.series[data-label="${band.dataset.label}"]`);
      const points = line.getAttribute('points').split(' ').map(p => p.split(',').map(Number));
      const judged = points.filter(([x]) => x >= x0 - 0.5 && x <= x1 + 0.5);
      out.band_points = judged.length; out.band_points_inside = judged.filter(([x, py]) => py >= y0 && py <= y1).length;
    }
  }
  const parity = d.querySelector('#plot-parity svg');
  if (parity) {
    const gate = parity.querySelector('line.gate');  // a horizontal line: wide, not high
    out.kl_gate_width = gate ? gate.getBoundingClientRect().width : 0;
    out.kl_gate_label = gate ? text_of(gate.querySelector('title')) : '';
    out.kl_gate_y = gate ? +gate.getAttribute('y1') : null;
    out.kl_ticks = [...parity.querySelectorAll('text[x="66"][text-anchor="end"]')]
      .map(t => [parseFloat(t.textContent), +t.getAttribute('y') - 4]);
  }
  const answered = all('#checks tbody tr').find(r => r.dataset.outcome === 'passed' && r.querySelector('.answer-text'));
  if (answered) {
    const shown = answered.querySelector('.answer-text');
    out.answer_seen_closed = seen(shown);
    answered.querySelector('details').open = true;
    out.answer_seen_open = seen(shown); out.answer_text = shown.textContent;
    out.prompt_text = text_of(answered.querySelector('.prompt'));
  }
  frame.style.width = '%dpx';  // narrow: the check ids must wrap, at their separators only
  const ids = all('#checks tbody td:first-child code, #metrics td code, #failures code, #findings code');
  out.id_breaks = ids.flatMap(breaks);
  out.verdict_breaks = all('#metrics tbody td:first-child, #checks tbody td:nth-child(2)').flatMap(breaks);
  frame.style.width = '1280px';
  if (w.harnessFilter) {
    d.getElementById('filter-outcome').value = 'failed'; w.harnessFilter();
    out.rows_after_filter = [...d.querySelectorAll('#checks tbody tr')].filter(r => !r.hidden).length;
  }
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script></body></html>"""


# Checks whose records a reader must read right: a memory series with its warm-up (as suites/test_memory.py records
# it), KL per eval text (as suites/test_parity.py does), an answer recorded through the plugin; and a case's FAIL lines.
READER = """
import pytest

from harness import SearchOptions

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_model_load_unload_memory_reaches_a_plateau(record_property):
    record_property("rss_series_mb", [480.0 + min(i, 2) * 0.5 + 0.02 * (i % 3) for i in range(22)])
    record_property("warmup", 2)
    record_property("unit", "load cycle")


@pytest.mark.parametrize("text", ["wiki", "code"])
def test_text_within_parity_gates(record_property, text):
    record_property("kl_mean", {"wiki": 0.12, "code": 0.2}[text])


def test_answers_the_question(harness_runtime, harness_answer):
    harness_answer(QUESTION, harness_runtime.generate(QUESTION, SearchOptions(max_new_tokens=8)))


"""
FAILING_CASE = """
import pytest


def test_case():
    pytest.fail("case 'capital' (cases.yaml:2) failed: score 0.50 below its threshold 1.00\\n  answer: 'Lyon'\\n"
                "  FAIL icontains 'paris': missing ['paris']\\n  ok   contains 'Lyon': all of ['Lyon'] found",
                pytrace=False)
"""


def _browser() -> str:
    for name in BROWSERS:
        if (path := shutil.which(name)) is not None:
            return path
    pytest.skip("no headless Chromium on this machine: install Debian's chromium-headless-shell (make install does "
                "where it runs as root) to check the reports in a real browser")


@pytest.fixture
def proxy() -> Iterator[list[bytes]]:
    """A local HTTP proxy that answers nothing and records every request the browser sends it."""
    server = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                requests.append(connection.recv(1024))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    requests.append(str(server.getsockname()[1]).encode())  # [0]: the port, not a request
    yield requests
    server.close()


def probe(page: Path, proxy: list[bytes]) -> dict[str, Any]:
    prober = page.parent / f"probe-{page.stem}.html"
    prober.write_text(PROBE % (page.name, NARROW), encoding="utf-8")
    done = subprocess.run(
        [_browser(), *FLAGS, f"--proxy-server=http://127.0.0.1:{proxy[0].decode()}", "--dump-dom", prober.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        encoding="utf-8",
    )
    shoot(page, page.with_suffix(".png"))
    start = done.stdout.find('<pre id="probe">')
    assert start >= 0, f"the probe did not run: {done.stderr[-2000:]}"
    text = done.stdout[start + len('<pre id="probe">'):done.stdout.index("</pre>", start)]
    return dict(json.loads(text.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                           .replace("&amp;", "&")))


def shoot(page: Path, image: Path, height: int = 2400) -> None:
    """A screenshot of ``page``, 1280 px wide and ``height`` high."""
    flags = [flag for flag in FLAGS if not flag.startswith("--window-size=")] + ["--hide-scrollbars"]
    subprocess.run([_browser(), *flags, f"--window-size=1280,{height}", f"--screenshot={image}", page.as_uri()],
                   capture_output=True, timeout=120, check=False)


def for_readme(page: Path, name: str, height: int) -> None:
    """Save the README's screenshot of ``page`` when HARNESS_README_IMAGES names a folder."""
    if README_IMAGES:
        shoot(page, README_IMAGES / name, height)


def test_a_failing_run_reads_verdict_first_in_a_browser(pytester: pytest.Pytester, env: dict[str, Path],  # noqa: F811
                                                        proxy: list[bytes]) -> None:
    (env["suite"] / "test_finds.py").write_text(
        "def test_finds(harness_finding):\n    harness_finding('special-token-injection', 'user text CAN switch "
        "roles')\n", encoding="utf-8")
    (env["suite"] / "test_reader.py").write_text(READER, encoding="utf-8")
    (env["suite"] / "test_case.py").write_text(FAILING_CASE, encoding="utf-8")
    run(pytester, env, str(env["suite"]))
    folder = latest(env)
    seen = probe(folder / "report.html", proxy)
    assert str(seen["banner"]).startswith("FAILED") and seen["banner_seen"]
    assert seen["banner_colour"] == "rgb(176, 0, 32)"  # red
    assert "the verdict line" in str(seen["failures"]) and "the data: [1, 2]" in str(seen["failures"])
    assert seen["failures_seen"] and seen["findings_seen"]
    assert "special-token-injection" in str(seen["findings"]) and "known runtime issue" in str(seen["findings"])
    assert int(str(seen["plots"])) >= 4  # latency, RSS, KL, precision bars: laid out, not hidden
    assert seen["rows_after_filter"] == 2  # the outcome filter leaves the two failed checks
    assert all("://" not in str(link) for link in seen["links"]), seen["links"]
    assert proxy[1:] == [], f"the report made network requests: {proxy[1:]}"
    _reads_right(seen, json.loads((folder / "results.json").read_text(encoding="utf-8")))


def _reads_right(seen: dict[str, Any], results: dict[str, Any]) -> None:
    """What a reader of the failing run's report sees, beyond each part being there."""
    red = "rgb(176, 0, 32)"
    # the failure's lines that say what failed are red, the rest (the answer, the passing assertion) is not; the
    # line its cause's heading says is not repeated under it
    assert seen["fail_lines"] == [["FAIL icontains 'paris': missing ['paris']", red]]
    # the metrics table names its verdict column and the headroom; its verdicts and the outcomes never wrap
    assert seen["metrics_header"] == ["verdict", "gate", "measured", "limit", "headroom", "check", "limit from"]
    assert seen["verdict_breaks"] == []
    # in a narrow window the check ids wrap, but only after "::", "_", "-", "/" or a space, or before "["
    assert seen["id_breaks"], "the window is narrow enough for the ids to wrap"
    assert all(pair[0] in ":_-/ " or pair[1] == "[" for pair in seen["id_breaks"]), seen["id_breaks"]
    # provenance: no blank header row, no Python dict repr
    assert seen["provenance_header_cells"] == 0 and "{" not in seen["provenance"], seen["provenance"]
    # the memory plot: a flat line on an axis of at least 2% of its level, inside the band its gate allows
    rss = next(t for t in results["tests"] if "test_model_load_unload_memory" in t["id"])
    assert seen["rss_span"] >= 0.02 * max(rss["series"]["rss_series_mb"]) and seen["rss_band_seen"]
    assert seen["band_points"] == seen["band_points_inside"] == 10  # the last half of the 20 cycles after the warm-up
    # the KL plot draws its gate, across the plot at the gate's value
    limit = float(results["gates"]["parity_kl_mean_max"]["value"])
    (low, y_low), (high, y_high) = seen["kl_ticks"][0], seen["kl_ticks"][-1]
    assert seen["kl_gate_y"] == pytest.approx(y_low + (limit - low) / (high - low) * (y_high - y_low), abs=0.2)
    assert seen["kl_gate_width"] > 500 and seen["kl_gate_label"] == f"gate parity_kl_mean_max {limit:g} (default)"
    # no label, tick or legend of any plot reaches outside it; legends say what was measured, the id is the tooltip
    assert seen["outside"] == [] and seen["overlapping"] == [] and seen["under_axis_name"] == []
    assert seen["legends"] and all("::" not in label and "::" in tooltip for label, tooltip in seen["legends"])
    # a passing check's answer: hidden until its row is opened, then what the model read and what it answered
    answer = next(t for t in results["tests"] if t["id"].endswith("test_answers_the_question"))["answers"][0]
    assert not seen["answer_seen_closed"] and seen["answer_seen_open"]
    assert (seen["prompt_text"], seen["answer_text"]) == (answer["prompt"], answer["answer"])
    assert str(seen["prompt_text"]).startswith("<|im_start|>user\nWhat is the capital of France?")


def test_a_passing_run_with_a_finding_says_so_in_amber(pytester: pytest.Pytester, env: dict[str, Path],  # noqa: F811
                                                       proxy: list[bytes]) -> None:
    finds = env["suite"] / "test_finds.py"
    finds.write_text("def test_finds(harness_finding):\n    harness_finding('special-token-injection', 'user text "
                     "CAN switch roles')\n", encoding="utf-8")
    (env["suite"] / "test_reader.py").write_text(READER, encoding="utf-8")  # passing checks with plots and an answer
    run(pytester, env, str(finds), str(env["suite"] / "test_reader.py"))
    seen = probe(latest(env) / "report.html", proxy)
    for_readme(latest(env) / "report.html", "report-finding.png", 900)
    assert str(seen["banner"]).startswith("PASSED with 1 finding") and seen["banner_seen"]
    assert seen["banner_colour"] == "rgb(160, 90, 0)"  # amber: never a pass's green
    assert seen["finding_cell"] == "passed, 1 finding" and seen["finding_cell_colour"] == "rgb(160, 90, 0)"
    assert seen["findings_seen"] and "user text CAN switch roles" in str(seen["findings"])
    assert proxy[1:] == [], f"the report made network requests: {proxy[1:]}"


def test_a_regressed_run_names_the_change_and_shows_the_comparison_next(
        pytester: pytest.Pytester, env: dict[str, Path], proxy: list[bytes],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    target = (str(env["suite"] / BENCHMARKS.name), "-k", "test_generation_latency and 32")
    run(pytester, env, *target)
    baseline = latest(env)
    # 4x the delay per token: a regression no load on the machine can hide (this checks the page, not the verdict,
    # which tests/plugin/test_reports.py measures at 20%)
    monkeypatch.setenv("FAKE_DELAY", str(DELAY * 4))
    run(pytester, env, *target, f"--harness-baseline={baseline}", "--gate=compare_other_cpu_diff_max=100")
    seen = probe(latest(env) / "report.html", proxy)
    assert str(seen["banner"]).startswith(f"REGRESSED against {baseline.name}: ") and seen["banner_seen"]
    assert "% in test_benchmarks.py::test_generation_latency[prompt=32]" in str(seen["banner"])
    assert seen["banner_colour"] == "rgb(176, 0, 32)"  # red
    assert seen["baseline_seen"] and "regression" in str(seen["baseline"])
    assert seen["sections"][0] == "baseline", seen["sections"]  # right under the banner
    assert proxy[1:] == [], f"the report made network requests: {proxy[1:]}"


def test_history_reads_in_a_browser(pytester: pytest.Pytester, env: dict[str, Path],  # noqa: F811
                                    proxy: list[bytes]) -> None:
    count = 17 if README_IMAGES else 3
    for _ in range(count):
        run(pytester, env, str(env["suite"] / "test_benchmarks.py"), "-k", "test_generation_latency and 32")
    assert cli.main(["history", str(env["reports"])]) == cli.EXIT_OK
    seen = probe(env["reports"] / "history.html", proxy)
    for_readme(env["reports"] / "history.html", "history.png", 1400)
    assert int(str(seen["plots"])) >= 2  # decode tokens/s and TTFT, one chart each
    runs = [link for link in seen["links"] if str(link).endswith("/report.html")]
    # each run linked from the runs table, to its own report; the newest also from each chart's axis
    assert len(set(runs)) == count and runs.count(runs[-count]) == int(str(seen["plots"])) + 1
    # no label outside its plot (the last run's too), on another, or under the axis name
    assert seen["outside"] == [] and seen["overlapping"] == [] and seen["under_axis_name"] == []
    assert seen["legends"] and all("::" not in label and "::" in tooltip for label, tooltip in seen["legends"])
    assert all((env["reports"] / str(link)).is_file() for link in runs)
    assert proxy[1:] == [], f"the history made network requests: {proxy[1:]}"
