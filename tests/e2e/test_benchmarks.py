"""Benchmarks on the real default model: the harness measures decode speed as a bare onnxruntime-genai
loop does; ``harness compare`` never passes a real 20% slow-down nor fails a second unchanged run (each may be
inconclusive); ``--harness-ab`` times the model against a copy of itself in one run."""

from __future__ import annotations

import json
import shutil
import statistics
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from benchmarks.overhead import TOLERANCE, bare_decode_rate, measure
from harness import cli
from harness.locations import suites_dir
from harness.report.compare import compare_runs
from harness.report.runs import load_run
from harness.testing.faults import SlowedRuntime

pytestmark = pytest.mark.serial  # timings: another test on the other core would move them

SLOW_DOWN = 0.20  # decode tokens/s 20% lower: TPOT 1.25 times as long
CONFTEST = """
import os
from harness.testing.faults import SlowedRuntime

def make_runtime(path, ep):
    return SlowedRuntime(path, float(os.environ["SLOW_DELAY_S"]))


def pytest_harness_runtime_factory(config):
    return make_runtime if os.environ.get("SLOW_DELAY_S") else None
"""


def test_harness_decode_rate_is_within_3_percent_of_a_bare_loop(built_path: Path) -> None:
    result = measure(built_path, pairs=15)
    print(result.line())
    if result.verdict(TOLERANCE) == "inconclusive":
        pytest.skip(f"the machine was too noisy to tell a {TOLERANCE:.0%} difference: {result.line()}")
    assert result.verdict(TOLERANCE) == "within", f"the harness's decode tokens/s is not within {TOLERANCE:.0%}: " \
                                                  f"{result.line()}"


def test_a_harness_slowed_per_token_is_caught_by_the_same_check(
    built_path: Path, machine_speed: Callable[[], float]
) -> None:
    """Half a token's time added to each token (decode tokens/s about 0.67 times), whatever the machine's speed."""
    delay = 0.5 / machine_speed()
    result = measure(built_path, pairs=10, runtime=partial(SlowedRuntime, delay_per_token_s=delay))
    print(result.line())
    if result.verdict(TOLERANCE) == "inconclusive":
        pytest.skip(f"the machine was too noisy to tell a {TOLERANCE:.0%} difference: {result.line()}")
    assert result.verdict(TOLERANCE) == "outside" and result.ratio < 1 - TOLERANCE, result.line()


def _tpot(run: Path) -> float:
    data = json.loads((run / "results.json").read_text(encoding="utf-8"))
    (test,) = [t for t in data["tests"] if t["id"].startswith("test_benchmarks.py::test_generation_latency")]
    return float(statistics.median(test["series"]["tpot_s_rounds"]))


@pytest.fixture(scope="module")
def machine_speed(built_path: Path) -> Callable[[], float]:
    """The machine's speed right now: a bare onnxruntime-genai loop's decode tokens/s, median of 3."""
    import onnxruntime_genai as og

    model = og.Model(str(built_path))
    ids = [int(t) for t in og.Tokenizer(model).encode("The history of the printing press " * 8)][:32]
    return lambda: statistics.median(bare_decode_rate(model, ids, 64) for _ in range(3))


def test_compare_never_passes_a_real_slow_down_nor_fails_an_unchanged_run(
    pytester: pytest.Pytester, built_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Runs A (unchanged), S (slowed 20%), B (unchanged), compared through the machine yardstick. On a shared
    machine whose speed drifts between runs no comparison can always tell, but it must never toss a coin: the
    unchanged pair is within or inconclusive (exit 0), the slowed pair regressed or inconclusive, so that
    ``--inconclusive=fail`` fails it (how often each happens: ``benchmarks/timing_power.py``)."""
    pytester.makeconftest(CONFTEST)
    shutil.copy(suites_dir() / "test_benchmarks.py", pytester.path)
    monkeypatch.delenv("SLOW_DELAY_S", raising=False)

    def bench() -> Path:
        result = pytester.runpytest(f"--model={built_path}", "--harness-profile=smoke",
                                    "test_benchmarks.py::test_generation_latency[prompt=32]")
        result.assert_outcomes(passed=1)
        return max((pytester.path / "reports").glob("*/results.json"), key=lambda p: p.stat().st_mtime_ns).parent

    baseline = bench()
    monkeypatch.setenv("SLOW_DELAY_S", str(_tpot(baseline) * SLOW_DOWN / (1 - SLOW_DOWN)))
    slowed = bench()
    monkeypatch.delenv("SLOW_DELAY_S")
    unchanged = bench()
    capsys.readouterr()
    same = cli.main(["compare", str(baseline), str(unchanged)])
    print(capsys.readouterr().out)
    worse = cli.main(["compare", str(baseline), str(slowed), "--inconclusive=fail"])
    out = capsys.readouterr().out
    print(out)
    assert same == cli.EXIT_OK, "two runs of the unchanged model were told apart"
    assert worse == cli.EXIT_REGRESSION, "a 20% slow-down passed as within its limit"
    assert "normalized: the machine yardstick's time" in out
    assert compare_runs(load_run(baseline), load_run(slowed)).verdict in ("regressed", "inconclusive")


AB_CONFTEST = """
import os
from pathlib import Path
from harness.testing.faults import SlowedRuntime


def make_runtime(path, ep):
    slowed = Path(path).resolve() == Path(os.environ["AB_UNDER_TEST"]).resolve()
    return SlowedRuntime(path, float(os.environ["AB_DELAY_S"]) if slowed else 0.0)


def pytest_harness_runtime_factory(config):
    return make_runtime
"""


def test_ab_on_the_real_model_never_passes_a_slow_down_nor_fails_an_unchanged_one(
    pytester: pytest.Pytester, built_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--harness-ab with the default model against a copy of itself, then with a 25% longer TPOT (decode tokens/s
    20% lower) in the model under test alone: the pairs share the machine, so the unchanged model is within or
    inconclusive, never regressed, and the slowed one regressed or inconclusive, never within (the fakes' tests
    pin the exact outcomes; ``benchmarks/timing_power.py`` counts them here)."""
    pytester.makeconftest(AB_CONFTEST)
    shutil.copy(suites_dir() / "test_benchmarks.py", pytester.path)
    production = shutil.copytree(built_path, tmp_path / "production")
    monkeypatch.setenv("AB_UNDER_TEST", str(built_path))

    def ab(delay_s: float) -> tuple[pytest.RunResult, dict[str, object]]:
        monkeypatch.setenv("AB_DELAY_S", str(delay_s))
        result = pytester.runpytest(f"--model={built_path}", "--harness-profile=smoke", f"--harness-ab={production}",
                                    "test_benchmarks.py::test_generation_latency[prompt=32]")
        run = max((pytester.path / "reports").glob("*/results.json"), key=lambda p: p.stat().st_mtime_ns)
        (test,) = json.loads(run.read_text(encoding="utf-8"))["tests"]
        return result, test

    unchanged, test = ab(0.0)
    assert test["outcome"] in ("passed", "inconclusive"), unchanged.stdout.str()[-3000:]
    assert test["metrics"]["ab_pairs"] == 10
    tpot = float(statistics.median(test["series"]["tpot_s_rounds"]))
    slowed, test = ab(tpot * SLOW_DOWN / (1 - SLOW_DOWN))
    assert test["outcome"] in ("failed", "inconclusive"), slowed.stdout.str()[-3000:]
    print(test["message"])
