"""Run reports, benchmarks and baseline comparison through pytester, with fakes behind the plugin's hooks.

The fake runtime sleeps a fixed delay per token, so a slowed "build" is the same fake with a larger
delay: ``compare`` must flag it, and must not flag a second run with the same delay. The times it reports come
from a seeded clock (a 3% scatter per token, a new seed per run), so a busy host does not move the verdicts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import jsonschema
import pytest

from harness import cli
from harness.locations import data_dir, suites_dir
from harness.testing.fakes import write_hf_folder

BENCHMARKS = suites_dir() / "test_benchmarks.py"
SCHEMA = json.loads((data_dir() / "schemas" / "results.schema.json").read_text(encoding="utf-8"))
DELAY = 0.002  # seconds per token of the fake: 500 tokens/s
SLOWED = DELAY * 1.25  # decode tokens/s 20% lower
# The fake sleeps instead of computing, so other processes on a busy machine barely move its timings:
# its runs are compared whatever the machine's load (the real model's e2e test keeps the limit).
SLEEPS = ("--busy-limit", "100")
UNCHANGED = re.compile(r"harness: no regression:")

CONFTEST = """
import os

import pytest
import time
from harness.testing.fakes import FakeBuilder, FakeRuntime, SeededClock, SteadyYardstick


class LateClock(FakeRuntime):
    '''Does slow work before its clock starts, so the latency it reports leaves that time out: on every call, or
    (FAKE_LATE_CLOCK=once) on the fourth only, as a host that stalls the process once would.'''

    def generate(self, prompt, *args, **kwargs):
        if os.environ["FAKE_LATE_CLOCK"] != "once" or self.calls == 3:
            time.sleep(0.05)
        return super().generate(prompt, *args, **kwargs)


def make_builder(settings):
    return FakeBuilder()

def pytest_harness_builders(config):
    return {"model-builder": make_builder}


def make_runtime(path, ep):
    kind = LateClock if os.environ.get("FAKE_LATE_CLOCK") else FakeRuntime
    return kind(path, never_stops=not os.environ.get("FAKE_STOPS"),
                delay_per_token_s=float(os.environ["FAKE_DELAY"]), clock=SeededClock(int(os.environ["FAKE_SEED"])))


def pytest_harness_runtime_factory(config):
    return make_runtime


@pytest.fixture(scope="session")
def harness_yardstick():
    return SteadyYardstick()
"""

CHECKS = """
import pytest

def test_passes(record_property):
    record_property("rss_series_mb", [200.0, 201.5, 201.0, 202.0])
    record_property("precision_table", [
        {"precision": "int4", "size_mb": 98.0, "decode_tokens_per_s": 140.0, "ttft_s": 0.06, "passed": True},
        {"precision": "fp32", "size_mb": 540.0, "decode_tokens_per_s": 45.0, "ttft_s": 0.2, "passed": False}])
    record_property("recommended_precision", "int4")
    record_property("ppl_ratio", 1.02)
    record_property("not_finite", float("nan"))

def test_fails():
    assert 1 == 2, "the verdict line\\nthe data: [1, 2]"

def test_skips():
    pytest.skip("no reference model")

@pytest.mark.xfail(reason="known gap")
def test_xfails():
    assert False
"""


@pytest.fixture
def env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    pytester.makeconftest(CONFTEST)
    for name in ("HARNESS_MODEL", "HARNESS_PRECISION", "HARNESS_PROFILE", "FAKE_STOPS", "FAKE_LATE_CLOCK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FAKE_DELAY", str(DELAY))
    monkeypatch.setenv("FAKE_SEED", "0")  # run() draws the next one; monkeypatch restores the variable
    suite = pytester.path / "suite"
    suite.mkdir()
    shutil.copy(BENCHMARKS, suite / BENCHMARKS.name)
    (suite / "test_checks.py").write_text(CHECKS, encoding="utf-8")
    return {"cache": pytester.path / "cache", "model": write_hf_folder(pytester.path / "hf"), "suite": suite,
            "reports": pytester.path / "reports"}


def run(pytester: pytest.Pytester, env: dict[str, Path], *args: str) -> pytest.RunResult:
    """The plugin on the fake model, smoke profile, its clock seeded anew."""
    os.environ["FAKE_SEED"] = str(int(os.environ["FAKE_SEED"]) + 1)
    return pytester.runpytest(f"--model={env['model']}",
                              f"--harness-cache-dir={env['cache']}", "--harness-profile=smoke", *args)


def bench(pytester: pytest.Pytester, env: dict[str, Path], *args: str) -> Path:
    """One run of the prompt=32 latency benchmark; returns its report folder."""
    result = run(pytester, env, str(env["suite"] / BENCHMARKS.name), "-k", "test_generation_latency and 32", *args)
    assert result.ret in (0, 1), result.stdout.str()
    return latest(env)


def latest(env: dict[str, Path]) -> Path:
    return max((p for p in env["reports"].iterdir() if (p / "results.json").is_file()),
               key=lambda p: p.stat().st_mtime_ns)


def results(folder: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    return data


class Figures(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.circles = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "figure" and values.get("id"):
            self.ids.append(str(values["id"]))
        self.circles += tag == "circle"
        href = values.get("href") or ""
        if tag in ("link", "img", "iframe") or "src" in values or "://" in href or href.startswith("//"):
            self.external.append(tag)  # an inline script and relative links to the run's own files are fine


def test_a_run_writes_results_summary_junit_and_html(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    result = run(pytester, env, str(env["suite"]))
    result.assert_outcomes(passed=3, failed=1, skipped=2, xfailed=1)  # the fake's context skips prompt=512
    folder = latest(env)
    result.stdout.fnmatch_lines([f"harness: report {folder} (results.json, summary.md, report.html, junit.xml)"])
    data = results(folder)
    jsonschema.validate(data, SCHEMA)
    assert data["totals"] == {"passed": 3, "failed": 1, "error": 0, "skipped": 2, "xfailed": 1, "xpassed": 0,
                              "unstable": 0, "inconclusive": 0}
    assert data["key"]["precision"] == "int4" and data["run"]["profile"] == "smoke"  # type: ignore[index]
    tests = {t["id"]: t for t in data["tests"]}  # type: ignore[attr-defined]
    failed = tests["test_checks.py::test_fails"]
    assert failed["message"].startswith("AssertionError: the verdict line")
    passes = tests["test_checks.py::test_passes"]
    assert passes["metrics"] == {"ppl_ratio": 1.02}
    assert passes["series"] == {"rss_series_mb": [200.0, 201.5, 201.0, 202.0]}
    assert passes["properties"]["not_finite"] == "nan" and passes["properties"]["recommended_precision"] == "int4"
    latency = tests["test_benchmarks.py::test_generation_latency[prompt=32]"]
    assert len(latency["series"]["decode_tokens_per_s_rounds"]) == 5  # smoke: 5 rounds, the warm-up left out
    # The fake's 1 / 2 ms, at most: a sleep never ends early, but overshoots by up to about a millisecond where timers
    # are coarser (Windows, a busy macOS VM); a rate off by a factor (a miscounted token, the prefill in it) is below.
    assert 200 < latency["metrics"]["decode_tokens_per_s"] < 510, latency["metrics"]

    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith("## FAILED: hf int4 (3 passed, 1 failed, 2 skipped, 1 xfailed)")
    assert "**the verdict line**" in summary and "the data: [1, 2]" in summary  # the full text
    assert "### Findings (1)" in summary and "- **known runtime issue** in `test_checks.py::test_xfails`" in summary
    assert "### Key metrics" in summary and "### Precision comparison" in summary
    assert f"Report: `reports/{folder.name}/report.html`" in summary  # relative to the project

    junit = ElementTree.parse(folder / "junit.xml").getroot().find("testsuite")
    assert junit is not None and (junit.get("tests"), junit.get("failures"), junit.get("skipped")) == ("7", "1", "3")
    failure = junit.find("testcase[@name='test_fails']/failure")
    assert failure is not None and "the data: [1, 2]" in (failure.text or "")

    figures = Figures()
    html = (folder / "report.html").read_text(encoding="utf-8")
    figures.feed(html)
    assert {"plot-latency", "plot-rss-generation", "plot-precision-size_mb"} <= set(figures.ids)
    assert figures.external == []
    assert html.index('id="verdict"') < html.index('id="failures"') < html.index('id="findings"') \
        < html.index('id="plots"') < html.index('id="all-checks"')
    assert 'href="./junit.xml"' in html and 'href="./results.json"' in html  # the run's own files, relative


def test_junitxml_given_by_the_user_is_left_alone(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    own = pytester.path / "own.xml"
    run(pytester, env, str(env["suite"] / "test_checks.py"), f"--junitxml={own}")
    folder = latest(env)
    assert own.is_file() and not (folder / "junit.xml").exists()
    assert results(folder)["run"]["junit_xml"] == str(own)  # type: ignore[index]


@pytest.mark.serial  # timings
def test_compare_flags_a_slowed_runtime_and_not_an_unchanged_one(
    pytester: pytest.Pytester, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    baseline, unchanged = bench(pytester, env), bench(pytester, env)
    monkeypatch.setenv("FAKE_DELAY", str(SLOWED))
    slowed = bench(pytester, env)
    capsys.readouterr()
    assert cli.main(["compare", str(baseline), str(unchanged), *SLEEPS]) == cli.EXIT_OK
    assert UNCHANGED.match(capsys.readouterr().out)
    assert cli.main(["compare", str(baseline), str(slowed), *SLEEPS]) == cli.EXIT_REGRESSION
    out = capsys.readouterr().out
    assert out.startswith("harness: REGRESSION")
    assert "REGRESSION   test_benchmarks.py::test_generation_latency[prompt=32] decode_tokens_per_s" in out


@pytest.mark.serial  # timings
def test_baseline_option_fails_the_run_on_a_regression(
    pytester: pytest.Pytester, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    baseline = bench(pytester, env)
    target = [str(env["suite"] / BENCHMARKS.name), "-k", "test_generation_latency and 32",
              "--gate=compare_other_cpu_diff_max=100"]  # the fake's sleeps leave the CPU idle: compare anyway
    unchanged = run(pytester, env, *target, f"--harness-baseline={env['reports']}")  # a folder of runs
    assert unchanged.ret == 0
    unchanged.stdout.re_match_lines([UNCHANGED.pattern + f".* against {baseline.name}: "])
    monkeypatch.setenv("FAKE_DELAY", str(SLOWED))
    slowed = run(pytester, env, *target, f"--harness-baseline={baseline}")
    assert slowed.ret == pytest.ExitCode.TESTS_FAILED
    slowed.assert_outcomes(passed=1)  # every check passed: the comparison alone fails the run
    slowed.stdout.fnmatch_lines(["harness: REGRESSION: *", "harness:   REGRESSION   *decode_tokens_per_s*",
                                 "=* 1 passed, * regressed in *"])  # pytest's last line says it too
    data = results(latest(env))
    jsonschema.validate(data, SCHEMA)
    assert data["run"]["exit_status"] == 1 and data["baseline"]["regressions"] >= 1  # type: ignore[index]
    summary = (latest(env) / "summary.md").read_text(encoding="utf-8")
    assert "**regression**" in summary
    assert re.match(rf"## REGRESSED against {baseline.name}: \w+ [+-]\d+\.\d% in test_benchmarks\.py::", summary)


def test_runs_whose_key_differs_are_not_compared(pytester: pytest.Pytester, env: dict[str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    int4 = bench(pytester, env)
    fp32 = bench(pytester, env, "--precision=fp32")
    capsys.readouterr()
    assert cli.main(["compare", str(int4), str(fp32)]) == cli.EXIT_USAGE  # comparing nothing never opens the gate
    assert capsys.readouterr().out.startswith(
        f"harness: not compared with {int4.name}: precision differs (baseline 'int4', this run 'fp32')")
    assert cli.main(["compare", str(int4), str(fp32), "--no-baseline-ok"]) == cli.EXIT_OK
    result = run(pytester, env, str(env["suite"] / "test_checks.py"), "-k", "passes", "--precision=fp32",
                 f"--harness-baseline={int4}")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["harness: not compared with *: precision differs*", "=* 1 inconclusive *"])
    assert (
        (latest(env) / "summary.md").read_text(encoding="utf-8").startswith(f"## PASSED, NOT COMPARED with {int4.name}")
    )
    strict = run(pytester, env, str(env["suite"] / "test_checks.py"), "-k", "passes", "--precision=fp32",
                 f"--harness-baseline={int4}", "--inconclusive=fail")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED


def test_bad_baseline_is_one_line(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    result = run(pytester, env, str(env["suite"] / "test_checks.py"), f"--harness-baseline={pytester.path / 'nope'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: harness: --harness-baseline (from the command line): */nope: no such file or "
                                 "folder; pass a run folder (reports/<run>/) or its results.json"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_runtime_that_ignores_min_new_tokens_fails_the_benchmark(
    pytester: pytest.Pytester, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STOPS", "1")  # answers "The capital of France is Paris." and stops
    result = run(pytester, env, str(env["suite"] / BENCHMARKS.name), "-k", "test_generation_latency and 32")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the runtime did not honour min_new_tokens = max_new_tokens = 64: the rounds "
                                 "produced [[]32, 32, 32, 32, 32[]] tokens*"])


@pytest.mark.serial  # timings
def test_runtime_whose_clock_misses_time_fails_the_benchmark(
    pytester: pytest.Pytester, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LATE_CLOCK", "1")
    result = run(pytester, env, str(env["suite"] / BENCHMARKS.name), "-k", "32")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the runtime's reported latency misses *% of the wall time of its call "
                                 "(median round) (gate benchmark_clock_gap_max at most 0.1, default)*"])
    monkeypatch.setenv("FAKE_LATE_CLOCK", "once")
    stalled_once = run(pytester, env, str(env["suite"] / BENCHMARKS.name), "-k", "32")
    stalled_once.assert_outcomes(passed=1)
    latency = results(latest(env))["tests"][0]  # type: ignore[index]
    assert latency["metrics"]["clock_gap_worst"] > 0.2 > latency["metrics"]["clock_gap"]


def test_pytest_benchmark_options_keep_working(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    result = run(pytester, env, str(env["suite"] / BENCHMARKS.name), "-k", "32", "--benchmark-autosave")
    result.assert_outcomes(passed=1)
    saved = list((env["reports"] / "benchmarks").glob("*/0001_*.json"))
    assert len(saved) == 1, "--benchmark-storage defaults to reports/benchmarks"
    data = json.loads(saved[0].read_text(encoding="utf-8"))
    extra = {b["name"]: b["extra_info"] for b in data["benchmarks"]}["test_generation_latency[prompt=32]"]
    assert extra["output_tokens"] == 64 and extra["precision"] == "int4" and extra["ep"] == "cpu"
    assert set(extra["decode_tokens_per_s"]) >= {"p50", "p90", "p99", "median", "stdev"}
    assert extra["peak_rss_mb"] > 0 and "model_sha256" in extra
    compared = run(pytester, env, str(env["suite"] / BENCHMARKS.name), "-k", "32", "--benchmark-compare",
                   "--benchmark-compare-fail=mean:1000%")
    assert compared.ret == 0
    compared.stdout.fnmatch_lines(["test_generation_latency[[]prompt=32[]] (0001_*"])
    elsewhere = pytester.path / "elsewhere"
    run(pytester, env, str(env["suite"] / BENCHMARKS.name), "-k", "32", "--benchmark-autosave",
        f"--benchmark-storage={elsewhere}")
    assert list(elsewhere.glob("*/0001_*.json"))


def test_benchmarks_run_under_xdist_on_one_worker(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    pytest.importorskip("xdist")
    result = pytester.runpytest_subprocess(
        f"--model={env['model']}", f"--harness-cache-dir={env['cache']}",
        "--harness-profile=smoke", "-n", "2", "-v", str(env["suite"]))
    result.assert_outcomes(passed=3, failed=1, skipped=2, xfailed=1)
    workers = {match.group(1) for line in result.stdout.lines
               if (match := re.match(r"\[(gw\d+)\].* PASSED .*test_benchmarks\.py::", line))}
    assert len(workers) == 1, f"benchmarks spread over {workers}"
    assert "automatically disabled" not in result.stdout.str() + result.stderr.str()
    data = results(latest(env))
    tests = {t["id"]: t for t in data["tests"]}  # type: ignore[attr-defined]
    assert len(tests) == 7 and data["run"]["xdist_workers"] == 2  # type: ignore[index]
    latency = tests["test_benchmarks.py::test_generation_latency[prompt=32]"]
    assert len(latency["series"]["decode_tokens_per_s_rounds"]) == 5, "benchmarks ran timed, not once"


def test_a_finding_shows_everywhere_though_its_check_passes(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    (env["suite"] / "test_finds.py").write_text(
        "def test_finds(harness_finding):\n    harness_finding('demo-leak', 'user text CAN do what it should not')\n",
        encoding="utf-8")
    result = run(pytester, env, str(env["suite"] / "test_finds.py"))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*= harness: findings =*", "FINDING demo-leak *test_finds.py::test_finds",
                                 "  user text CAN do what it should not"])
    folder = latest(env)
    data = results(folder)
    jsonschema.validate(data, SCHEMA)
    assert data["tests"][0]["findings"] == [{"kind": "demo-leak", "text": "user text CAN do what it should not"}]  # type: ignore[index]
    junit = ElementTree.parse(folder / "junit.xml").getroot()
    prop = junit.find(".//testcase[@name='test_finds']/properties/property[@name='harness_finding:demo-leak']")
    assert prop is not None and prop.get("value") == "user text CAN do what it should not"
    assert "user text CAN do what it should not" in (folder / "summary.md").read_text(encoding="utf-8")
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert 'id="findings"' in html and "demo-leak" in html and 'class="banner findings">PASSED with 1 finding' in html
    assert (folder / "summary.md").read_text(encoding="utf-8").startswith("## PASSED with 1 finding: ")


def test_baseline_from_the_environment_and_pyproject(pytester: pytest.Pytester, env: dict[str, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    checks = str(env["suite"] / "test_checks.py")
    monkeypatch.setenv("HARNESS_BASELINE", str(pytester.path / "nope"))
    result = run(pytester, env, checks)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: harness: --harness-baseline (from environment variable HARNESS_BASELINE): "
                                 "*nope: no such file or folder*"])
    monkeypatch.delenv("HARNESS_BASELINE")
    (pytester.path / "pyproject.toml").write_text('[tool.harness]\nbaseline = "empty-reports"\n', encoding="utf-8")
    (pytester.path / "empty-reports").mkdir()
    result = run(pytester, env, checks)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: harness: --harness-baseline (from [[]tool.harness[]] in *pyproject.toml): the "
                                 "baseline folder */empty-reports holds no run*"])


def test_pytest_help_prints_no_warning(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    assert result.ret == 0
    assert "Warning" not in result.stderr.str() and "PytestAssertRewriteWarning" not in result.stdout.str()


def test_a_passing_checks_answer_is_stored_with_the_prompt_the_model_read(
    pytester: pytest.Pytester, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STOPS", "1")
    (env["suite"] / "test_answers.py").write_text(
        "def test_answers(harness_runtime, harness_answer):\n"
        "    chat = [{'role': 'user', 'content': 'Capital of France?'}]\n"
        "    harness_answer(chat, harness_runtime.generate(chat))\n"
        "    harness_answer('raw text', harness_runtime.generate('raw text'))\n", encoding="utf-8")
    result = run(pytester, env, str(env["suite"] / "test_answers.py"))
    result.assert_outcomes(passed=1)
    data = results(latest(env))
    jsonschema.validate(data, SCHEMA)
    tests = data["tests"]
    assert isinstance(tests, list) and len(tests) == 1
    assert tests[0]["answers"] == [
        {"prompt": "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n",
         "answer": "The capital of France is Paris.", "stop_reason": "eos", "output_tokens": 32},
        {"prompt": "raw text", "answer": "The capital of France is Paris.", "stop_reason": "eos", "output_tokens": 32}]


def test_a_plugin_adds_its_fields_to_results_json_and_a_broken_one_loses_nothing(
    pytester: pytest.Pytester, env: dict[str, Path]
) -> None:
    (env["suite"] / "conftest.py").write_text(
        "import os\n\n"
        "def pytest_harness_results(config, results, extra):\n"
        "    if os.environ.get('BROKEN_HOOK') == 'raises':\n"
        "        raise ValueError('no dashboard')\n"
        "    extra['dashboard'] = {'checks': len(results['tests']), 'url': 'https://example.invalid/run/1'}\n"
        "    if os.environ.get('BROKEN_HOOK') == 'not-json':\n"
        "        extra['dashboard']['when'] = object()\n", encoding="utf-8")
    target = str(env["suite"] / "test_checks.py")
    good = run(pytester, env, target, "-k", "passes")
    assert good.ret == 0
    data = results(latest(env))
    jsonschema.validate(data, SCHEMA)
    assert data["extra"] == {"dashboard": {"checks": 1, "url": "https://example.invalid/run/1"}}
    for broken, said in (("raises", "ValueError: no dashboard"), ("not-json", "TypeError: Object of type object")):
        os.environ["BROKEN_HOOK"] = broken
        try:
            result = run(pytester, env, target, "-k", "passes")
        finally:
            del os.environ["BROKEN_HOOK"]
        assert result.ret == pytest.ExitCode.INTERNAL_ERROR  # the reports are written, one part missing
        result.stdout.fnmatch_lines([f"*could not add the fields of pytest_harness_results: {said}*"])
        data = results(latest(env))
        assert "extra" not in data and data["totals"]["passed"] == 1  # type: ignore[index]
