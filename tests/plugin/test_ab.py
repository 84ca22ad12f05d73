"""--harness-ab: the benchmarks time the model under test against a baseline loaded beside it, pair by pair.

The fake runtime sleeps a fixed delay per token; the baseline is a prebuilt fake folder whose runtime sleeps its
own delay, so a slowed model, an unchanged one and one at the limit give the three outcomes. Each runtime reports
its times from a seeded clock (a 3% scatter per token, a seed per runtime), so a busy host does not move them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.etree import ElementTree

import jsonschema
import pytest

from harness.locations import data_dir, suites_dir
from harness.testing.fakes import write_genai_folder, write_hf_folder

BENCHMARKS = suites_dir() / "test_benchmarks.py"
SCHEMA = json.loads((data_dir() / "schemas" / "results.schema.json").read_text(encoding="utf-8"))
DELAY = 0.002  # seconds per token of the baseline: 500 tokens/s
CONFTEST = """
import itertools
import os

import pytest
from harness.testing.fakes import FakeBuilder, FakeRuntime, SeededClock, SteadyYardstick

SEEDS = itertools.count(1)


def pytest_harness_builders(config):
    return {"model-builder": lambda settings: FakeBuilder()}


class Scattered(FakeRuntime):
    '''Each call's delay a factor of the set one, in a fixed cycle (the warm-up's first): pairs whose ratios
    scatter from 0.9 to 1.4, median 1.125.'''

    factors = itertools.cycle([0.8, 1.4, 0.9, 1.3, 1.0, 1.2, 1.1, 1.15, 0.95, 1.35, 1.05])

    def generate(self, prompt, *args, **kwargs):
        self.delay_per_token_s = float(os.environ["MODEL_DELAY"]) * next(self.factors)
        return super().generate(prompt, *args, **kwargs)


def make_runtime(path, ep):
    baseline = str(path) == os.environ["AB_BASELINE"]
    delay = float(os.environ["AB_DELAY" if baseline else "MODEL_DELAY"])
    kind = Scattered if os.environ.get("MODEL_SCATTERS") and not baseline else FakeRuntime
    return kind(path, never_stops=True, delay_per_token_s=delay, clock=SeededClock(next(SEEDS)))


def pytest_harness_runtime_factory(config):
    return make_runtime


@pytest.fixture(scope="session")
def harness_yardstick():
    return SteadyYardstick()
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytester.makeconftest(CONFTEST)
    baseline = write_genai_folder(pytester.path / "production")
    monkeypatch.setenv("AB_BASELINE", str(baseline.resolve()))
    monkeypatch.setenv("AB_DELAY", str(DELAY))
    shutil.copy(BENCHMARKS, pytester.path / BENCHMARKS.name)
    write_hf_folder(pytester.path / "fine-tune")
    return baseline


def ab_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, slower: float, *args: str) -> pytest.RunResult:
    """The prompt=32 benchmark of the fine-tune, each token ``slower`` times the baseline's delay."""
    monkeypatch.setenv("MODEL_DELAY", str(DELAY * slower))
    return pytester.runpytest(f"--model={pytester.path / 'fine-tune'}", f"--harness-cache-dir={pytester.path / 'c'}",
                              "--harness-profile=smoke", f"--harness-ab={pytester.path / 'production'}",
                              "-k", "test_generation_latency and 32", BENCHMARKS.name, *args)


def latest(pytester: pytest.Pytester) -> dict[str, object]:
    folder = max((pytester.path / "reports").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    data: dict[str, object] = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    jsonschema.validate(data, SCHEMA)
    return data


def check(data: dict[str, object]) -> dict[str, object]:
    tests = data["tests"]
    assert isinstance(tests, list) and len(tests) == 1
    return dict(tests[0])


@pytest.mark.serial  # timings
def test_an_unchanged_model_is_within_and_a_slowed_one_regresses(pytester: pytest.Pytester, project: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    same = ab_run(pytester, monkeypatch, 1.0)
    same.assert_outcomes(passed=1)
    same.stdout.fnmatch_lines(["harness: A/B: the benchmarks time this model against */production (--harness-ab)"])
    metrics = check(latest(pytester))["metrics"]
    assert isinstance(metrics, dict) and metrics["ab_pairs"] == 10  # the smoke profile's 5 rounds, raised to 10
    assert 0.95 < metrics["ab_decode_tokens_per_s_ratio"] < 1.05

    slowed = ab_run(pytester, monkeypatch, 1.25)  # decode tokens/s 20% lower
    slowed.assert_outcomes(failed=1)
    slowed.stdout.fnmatch_lines(["*slower than the A/B baseline (gate regression_timing_max 0.1, default):*",
                                 "*REGRESSION   decode_tokens_per_s: this model / the baseline = 0.* (median of 10 "
                                 "pairs, 95% CI *): *% worse: beyond the 10% limit*"])
    slowed_check = check(latest(pytester))
    assert slowed_check["properties"]["ab_decode_tokens_per_s_verdict"] == "regression"  # type: ignore[index]
    assert 0.78 < slowed_check["metrics"]["ab_decode_tokens_per_s_ratio"] < 0.82  # type: ignore[index]


def test_a_timing_whose_pairs_scatter_is_inconclusive_its_own_outcome(pytester: pytest.Pytester, project: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's calls take 0.9 to 1.4 times the baseline's time: a 95% interval from about 5% better to 35%
    worse, across the 10% limit whatever the machine does."""
    monkeypatch.setenv("MODEL_SCATTERS", "1")
    at_limit = ab_run(pytester, monkeypatch, 1.0)
    assert at_limit.ret == 0
    at_limit.stdout.fnmatch_lines(["*harness: inconclusive verdicts*", "INCONCLUSIVE *test_generation_latency*",
                                   "*1 inconclusive*"])
    data = latest(pytester)
    assert check(data)["outcome"] == "inconclusive" and "straddles the 10% limit" in str(check(data)["message"])
    junit = ElementTree.parse(Path(str(data["run"]["junit_xml"]))).getroot()  # type: ignore[index]
    assert junit.find(".//property[@name='harness_outcome'][@value='inconclusive']") is not None
    strict = ab_run(pytester, monkeypatch, 1.0, "--inconclusive=fail")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*(--inconclusive=fail from the command line)*"])


def test_a_results_file_names_its_model_and_a_gone_one_is_one_line(pytester: pytest.Pytester, project: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    first = pytester.runpytest(f"--model={project}", "--harness-profile=smoke", "-k", "latency and 32",
                               BENCHMARKS.name, "--benchmark-disable")
    assert first.ret == 0
    run_folder = max((pytester.path / "reports").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    monkeypatch.setenv("MODEL_DELAY", str(DELAY))
    again = pytester.runpytest(f"--model={pytester.path / 'fine-tune'}", f"--harness-cache-dir={pytester.path / 'c'}",
                               f"--harness-ab={run_folder / 'results.json'}", "--collect-only", BENCHMARKS.name)
    again.stdout.fnmatch_lines(["harness: A/B: the benchmarks time this model against */production (--harness-ab)"])
    shutil.rmtree(project)
    gone = pytester.runpytest(f"--model={pytester.path / 'fine-tune'}", f"--harness-cache-dir={pytester.path / 'c'}",
                              f"--harness-ab={run_folder}", BENCHMARKS.name)
    assert gone.ret == pytest.ExitCode.USAGE_ERROR
    gone.stderr.fnmatch_lines([f"ERROR: harness: --harness-ab {run_folder}: the model run {run_folder.name} tested is "
                               f"no longer at {project.resolve()} (a cleared cache?); pass that model itself: "
                               "--harness-ab=ITS_FOLDER_OR_SOURCE"])
    assert "Traceback" not in gone.stdout.str() + gone.stderr.str()
