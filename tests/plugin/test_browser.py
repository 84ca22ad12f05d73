"""The reports in a real browser: Debian's headless Chromium opens report.html and history.html of real
(fake-model) runs, and a probe page beside them reads what a person would see. Every request the browser
makes goes to a local proxy that counts them: the reports must work offline, so it must count none.

Skips, saying why, where no headless Chromium is installed (``make install`` installs Debian's
``chromium-headless-shell`` where it runs as root)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import cli
from tests.plugin.test_reports import BENCHMARKS, CHECKS, DELAY, env, latest, run  # noqa: F401  (env: a fixture)

BROWSERS = ("chromium-headless-shell", "chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--allow-file-access-from-files", "--virtual-time-budget=5000", "--window-size=1280,2400")

# Reads the report in the iframe: is each part there and visible (laid out, not hidden), does the filter work?
PROBE = """<!DOCTYPE html><html><body><iframe id="page" src="%s" style="width:1280px;height:2400px"></iframe>
<script>
window.addEventListener('load', () => {
  const d = document.getElementById('page').contentDocument, w = d.defaultView;
  const seen = e => { if (!e) return false; const r = e.getBoundingClientRect(), s = w.getComputedStyle(e);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const text = sel => (d.querySelector(sel) || {}).textContent || '';
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
    links: [...d.querySelectorAll('a')].map(a => a.getAttribute('href'))};
  if (w.harnessFilter) {
    d.getElementById('filter-outcome').value = 'failed'; w.harnessFilter();
    out.rows_after_filter = [...d.querySelectorAll('#checks tbody tr')].filter(r => !r.hidden).length;
  }
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script></body></html>"""


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


def probe(page: Path, proxy: list[bytes]) -> dict[str, object]:
    prober = page.parent / f"probe-{page.stem}.html"
    prober.write_text(PROBE % page.name, encoding="utf-8")
    done = subprocess.run(
        [_browser(), *FLAGS, f"--proxy-server=http://127.0.0.1:{proxy[0].decode()}", "--dump-dom", prober.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        encoding="utf-8",
    )
    subprocess.run([_browser(), *FLAGS, f"--screenshot={page.with_suffix('.png')}", page.as_uri()],
                   capture_output=True, timeout=120, check=False)
    start = done.stdout.find('<pre id="probe">')
    assert start >= 0, f"the probe did not run: {done.stderr[-2000:]}"
    text = done.stdout[start + len('<pre id="probe">'):done.stdout.index("</pre>", start)]
    return dict(json.loads(text.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                           .replace("&amp;", "&")))


def test_a_failing_run_reads_verdict_first_in_a_browser(pytester: pytest.Pytester, env: dict[str, Path],  # noqa: F811
                                                        proxy: list[bytes]) -> None:
    (env["suite"] / "test_finds.py").write_text(
        "def test_finds(harness_finding):\n    harness_finding('special-token-injection', 'user text CAN switch "
        "roles')\n", encoding="utf-8")
    run(pytester, env, str(env["suite"]))
    seen = probe(latest(env) / "report.html", proxy)
    assert str(seen["banner"]).startswith("FAILED") and seen["banner_seen"]
    assert seen["banner_colour"] == "rgb(176, 0, 32)"  # red
    assert "the verdict line" in str(seen["failures"]) and "the data: [1, 2]" in str(seen["failures"])
    assert seen["failures_seen"] and seen["findings_seen"]
    assert "special-token-injection" in str(seen["findings"]) and "known runtime issue" in str(seen["findings"])
    assert int(str(seen["plots"])) >= 3  # latency, RSS, precision bars: laid out, not hidden
    assert seen["rows_after_filter"] == 1  # the outcome filter leaves the one failed check
    assert all("://" not in str(link) for link in seen["links"]), seen["links"]  # type: ignore[attr-defined]
    assert proxy[1:] == [], f"the report made network requests: {proxy[1:]}"


def test_a_passing_run_with_a_finding_says_so_in_amber(pytester: pytest.Pytester, env: dict[str, Path],  # noqa: F811
                                                       proxy: list[bytes]) -> None:
    finds = env["suite"] / "test_finds.py"
    finds.write_text("def test_finds(harness_finding):\n    harness_finding('special-token-injection', 'user text "
                     "CAN switch roles')\n", encoding="utf-8")
    run(pytester, env, str(finds))
    seen = probe(latest(env) / "report.html", proxy)
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
    assert seen["sections"][0] == "baseline", seen["sections"]  # type: ignore[index]  # right under the banner
    assert proxy[1:] == [], f"the report made network requests: {proxy[1:]}"


def test_history_reads_in_a_browser(pytester: pytest.Pytester, env: dict[str, Path],  # noqa: F811
                                    proxy: list[bytes]) -> None:
    for _ in range(3):
        run(pytester, env, str(env["suite"] / "test_benchmarks.py"), "-k", "test_generation_latency and 32")
    assert cli.main(["history", str(env["reports"])]) == cli.EXIT_OK
    seen = probe(env["reports"] / "history.html", proxy)
    assert int(str(seen["plots"])) >= 2  # decode tokens/s and TTFT, one chart each
    runs = [link for link in seen["links"] if str(link).endswith("/report.html")]  # type: ignore[attr-defined]
    # each run linked from each chart's axis and from the runs table, to its own report
    assert len(runs) == (int(str(seen["plots"])) + 1) * 3 and len(set(runs)) == 3
    assert all((env["reports"] / str(link)).is_file() for link in runs)
    assert proxy[1:] == [], f"the history made network requests: {proxy[1:]}"
