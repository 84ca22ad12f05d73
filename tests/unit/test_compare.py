"""The comparison of runs (noise-aware verdicts, key matching, loading) and the ``harness`` command."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import cli
from harness.report.compare import (
    Thresholds,
    bootstrap_interval,
    compare_metric,
    compare_runs,
    key_mismatches,
    key_of,
    markdown,
    pick_baseline,
)
from harness.report.runs import FORMAT, CompareError, Run, load_run

KEY = {"model_sha256": "ab" * 32, "precision": "int4", "ep": "cpu", "machine": "AMD EPYC, 2 cores"}
TEST = "test_benchmarks.py::test_generation_latency[prompt=32]"


def rounds(center: float, spread: float, count: int = 5, seed: int = 1) -> list[float]:
    """``count`` values around ``center``, each off by up to ``spread`` (a fraction)."""
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(count)]


def document(name: str, decode: list[float] | None = None, started: str = "2026-11-24T10:00:00+00:00",
             key: dict[str, str] | None = None, quality: dict[str, float] | None = None,
             busy: float = 2.0, copies: int = 1, yardstick: list[float] | None = None) -> dict[str, Any]:
    tests = []
    if decode is not None:
        series = {"decode_tokens_per_s_rounds": decode, **({"yardstick_s_rounds": yardstick} if yardstick else {})}
        tests += [{"id": TEST if copies == 1 else f"{TEST}-{i}",
                   "metrics": {"decode_tokens_per_s": sorted(decode)[len(decode) // 2], "other_cpu_percent": busy},
                   "series": series, "outcome": "passed"} for i in range(copies)]
    if quality is not None:
        tests.append({"id": "test_parity.py::test_parity", "metrics": quality, "series": {}, "outcome": "passed"})
    return {"format": FORMAT, "schema_version": 2, "run": {"id": name, "started": started},
            "key": key or KEY, "tests": tests, "totals": {"passed": len(tests)}}


def write_run(folder: Path, name: str, **kwargs: Any) -> Path:
    run = folder / name
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(document(name, **kwargs)), encoding="utf-8")
    return run


def as_run(data: dict[str, Any]) -> Run:
    return Run(Path("results.json"), data)


# -- verdicts ----------------------------------------------------------------------------------------
def test_bootstrap_interval_is_seeded_and_brackets_the_change() -> None:
    base, slow = rounds(100, 0.05), rounds(80, 0.05, seed=2)
    low, high = bootstrap_interval(base, slow)
    assert (low, high) == bootstrap_interval(base, slow)
    assert low < -0.20 < high < 0, "contains the true change, and excludes no change"


@pytest.mark.parametrize(
    ("current", "verdict"),
    [
        (rounds(80, 0.05, seed=2), "regression"),  # decode tokens/s 20% lower: the whole interval beyond 10%
        (rounds(100, 0.05, seed=2), "within"),  # same distribution, other draws
        (rounds(125, 0.05, seed=2), "improvement"),
        (rounds(95, 0.005, seed=2), "within"),  # significant but 5%: under the 10% limit
        (rounds(85, 0.6, seed=2), "inconclusive"),  # 15% lower median, but the rounds scatter +-60%
        (rounds(89, 0.01, seed=2), "inconclusive"),  # 11% lower, 12% more time: the interval straddles 10%
    ],
    ids=["20%-slower", "same", "faster", "small-but-real", "noisy", "at-the-limit"],
)
def test_timing_verdict_is_regressed_within_or_inconclusive(current: list[float], verdict: str) -> None:
    delta = compare_metric(TEST, "decode_tokens_per_s", rounds(100, 0.05), current, Thresholds())
    assert delta.verdict == verdict, delta.line()
    assert delta.change_ci is not None and delta.rounds == (5, 5)


def test_a_large_change_whose_interval_includes_no_change_is_inconclusive_never_unchanged() -> None:
    delta = compare_metric(TEST, "latency_s", [1.0, 1.0, 1.0, 3.0, 3.0], [1.0, 3.0, 3.0, 3.0, 1.0], Thresholds())
    assert delta.change == pytest.approx(2.0) and delta.change_ci is not None and delta.change_ci[0] <= 0
    assert delta.verdict == "inconclusive" and "straddles the 10% limit" in delta.note


@pytest.mark.parametrize("slower", [1.0, 1.08, 1.10, 1.12, 1.14, 1.25])
def test_tokens_per_second_and_time_per_token_of_the_same_rounds_agree(slower: float) -> None:
    """A rate is judged as the time it implies, so the two views of one measurement give one verdict."""
    base, current = rounds(0.01, 0.01), [t * slower for t in rounds(0.01, 0.01, seed=4)]
    by_time = compare_metric(TEST, "tpot_s", base, current, Thresholds())
    by_rate = compare_metric(TEST, "decode_tokens_per_s", [1 / t for t in base], [1 / t for t in current], Thresholds())
    assert (by_rate.verdict, by_rate.note) == (by_time.verdict, by_time.note), (by_time.line(), by_rate.line())


def test_lower_is_better_metrics_regress_upwards() -> None:
    delta = compare_metric(TEST, "ttft_s", rounds(0.10, 0.02), rounds(0.13, 0.02, seed=3), Thresholds())
    assert delta.verdict == "regression" and delta.change > 0.2


@pytest.mark.parametrize(("current", "verdict"), [(1.05, "regression"), (1.01, "within"), (0.9, "improvement")])
def test_quality_scores_use_the_threshold_alone(current: float, verdict: str) -> None:
    delta = compare_metric("q", "ppl_ratio", [1.0], [current], Thresholds())
    assert delta.verdict == verdict and delta.change_ci is None


def test_threshold_is_configurable() -> None:
    base, slow = rounds(100, 0.01), rounds(93, 0.01, seed=2)
    assert compare_metric(TEST, "decode_tokens_per_s", base, slow, Thresholds()).verdict == "within"
    assert compare_metric(TEST, "decode_tokens_per_s", base, slow, Thresholds(timing=0.05)).verdict == "regression"


# -- runs --------------------------------------------------------------------------------------------
def test_runs_with_other_key_properties_are_not_compared() -> None:
    other = {**KEY, "machine": "Intel Xeon, 8 cores", "ep": "cuda"}
    comparison = compare_runs(as_run(document("a", rounds(100, 0.05))),
                              as_run(document("b", rounds(50, 0.05), key=other)))
    assert not comparison.compared and not comparison.deltas and comparison.verdict == "not compared"
    assert comparison.reasons == ["execution provider differs (baseline 'cpu', this run 'cuda')",
                                  "machine differs (baseline 'AMD EPYC, 2 cores', this run 'Intel Xeon, 8 cores')"]
    assert comparison.headline().startswith("not compared with a: execution provider differs")
    ignored = compare_runs(as_run(document("a", rounds(100, 0.05))),
                           as_run(document("b", rounds(50, 0.05), key=other)), ignore_keys=("machine", "ep"))
    assert [d.verdict for d in ignored.deltas] == ["regression"]


def test_accuracy_level_and_instruction_set_class_are_key_properties() -> None:
    """Level 1 decodes at about 0.6 x level 4, and another instruction-set class runs other int8 kernels."""
    provenance = {"source_sha256": "ab", "ep": "cpu", "accuracy_level_setting": None,
                  "machine": {"cpu": "AMD EPYC", "isa": "avx512-vnni", "cores": "2"}}
    as_built = key_of(provenance, "int4")
    assert as_built["accuracy_level"] == "as built" and as_built["machine"] == "AMD EPYC, avx512-vnni, 2 cores"
    fp32_compute = key_of({**provenance, "accuracy_level_setting": 1}, "int4")
    avx2 = key_of({**provenance, "machine": {**provenance["machine"], "isa": "avx2"}}, "int4")
    assert key_mismatches(as_built, fp32_compute) == [
        "accuracy level differs (baseline 'as built', this run '1')"]
    assert key_mismatches(as_built, avx2) == [
        "machine differs (baseline 'AMD EPYC, avx512-vnni, 2 cores', this run 'AMD EPYC, avx2, 2 cores')"]


def test_too_few_rounds_are_inconclusive_and_missing_checks_are_listed() -> None:
    comparison = compare_runs(as_run(document("a", [100.0, 101.0], quality={"kl_mean": 0.1})),
                              as_run(document("b", [60.0, 61.0])))
    assert [(d.verdict, d.note) for d in comparison.deltas] == [
        ("inconclusive", "2 round(s): at least 3 give a noise estimate")]
    assert comparison.uncompared == ["test_parity.py::test_parity: not in this run"]
    assert comparison.verdict == "inconclusive" and comparison.headline().startswith("INCONCLUSIVE: b against a")


def test_timings_from_an_unequally_busy_machine_are_inconclusive_but_quality_is_compared() -> None:
    baseline = as_run(document("a", rounds(100, 0.05), quality={"ppl_ratio": 1.0}, busy=3.0))
    busy = as_run(document("b", rounds(60, 0.05), busy=55.0, quality={"ppl_ratio": 1.5}))
    comparison = compare_runs(baseline, busy)
    assert [(d.metric, d.verdict) for d in comparison.deltas] == [("decode_tokens_per_s", "inconclusive"),
                                                                  ("ppl_ratio", "regression")]
    assert comparison.deltas[0].note == ("the machine was not equally busy: other processes used 3% of its CPU during "
                                         "the baseline and 55% during this run (more than 15 points apart)")
    relaxed = compare_runs(baseline, busy, Thresholds(busy=60.0))
    assert {d.metric: d.verdict for d in relaxed.deltas} == {"decode_tokens_per_s": "regression",
                                                             "ppl_ratio": "regression"}
    equally_busy = as_run(document("c", rounds(60, 0.05), busy=50.0))
    assert [d.verdict for d in compare_runs(busy, equally_busy).deltas] == ["within"]


def test_the_machine_yardstick_cancels_the_machines_speed_between_runs() -> None:
    """A machine 30% slower in the second run slows the model and the yardstick alike."""
    steady, slow_machine = [0.010] * 5, [0.010 / 0.7] * 5
    base = as_run(document("a", rounds(100, 0.02), yardstick=steady))
    same_model = as_run(document("b", [v * 0.7 for v in rounds(100, 0.02, seed=4)], yardstick=slow_machine))
    normalized = compare_runs(base, same_model).deltas[0]
    assert normalized.verdict == "within", normalized.line()
    assert normalized.note.endswith("(normalized: the machine yardstick's time +42.9% in this run)")
    assert normalized.current == pytest.approx(70, rel=0.03)  # the medians shown stay the measured ones
    raw = compare_runs(as_run(document("a", rounds(100, 0.02))),
                       as_run(document("b", [v * 0.7 for v in rounds(100, 0.02, seed=4)]))).deltas[0]
    assert raw.verdict == "regression"  # what the machine's slow-down looks like unnormalized
    slowed = as_run(document("c", [v * 0.7 * 0.8 for v in rounds(100, 0.02, seed=4)], yardstick=slow_machine))
    assert compare_runs(base, slowed).deltas[0].verdict == "regression"  # a real 20% on top of it


def test_a_check_that_passed_in_the_baseline_and_fails_now_is_a_regression() -> None:
    failing = document("b", rounds(100, 0.05, seed=7))
    failing["tests"][0].update(outcome="failed", message="AssertionError: decode stalled\nmore")
    comparison = compare_runs(as_run(document("a", rounds(100, 0.05))), as_run(failing))
    assert comparison.broken == [f"{TEST} passed in the baseline, failed now: AssertionError: decode stalled"]
    assert comparison.verdict == "regressed" and comparison.to_dict()["regressions"] == 1
    assert "REGRESSION: b against a" in comparison.headline() and "1 check(s) that passed there fail now" in \
        comparison.headline()
    assert f"- {TEST} passed in the baseline, failed now" in markdown(comparison)
    fixed = compare_runs(as_run(failing), as_run(document("c", rounds(100, 0.05))))  # the other way is no regression
    assert fixed.broken == [] and fixed.verdict == "within"


def test_runs_without_a_metric_in_common_compare_nothing() -> None:
    comparison = compare_runs(as_run(document("a", quality={"kl_mean": 0.1})), as_run(document("b", [1.0, 2.0, 3.0])))
    assert comparison.verdict == "not compared" and not comparison.compared
    assert comparison.headline() == ("not compared with a: no metric of b has a counterpart in a (do the two runs "
                                     "hold the same benchmark or quality checks?)")


def test_an_older_results_file_reads_unchanged_as_within() -> None:
    old = compare_runs(as_run(document("a", rounds(100, 0.05))), as_run(document("b", rounds(100, 0.05, 7)))).to_dict()
    old["deltas"][0]["verdict"] = "unchanged"
    assert [d.verdict for d in type(compare_runs(as_run(document("a")), as_run(document("b")))).from_dict(
        old).deltas] == ["within"]


def test_comparison_round_trips_through_its_dict() -> None:
    comparison = compare_runs(as_run(document("a", rounds(100, 0.05))), as_run(document("b", rounds(70, 0.05))))
    again = type(comparison).from_dict(json.loads(json.dumps(comparison.to_dict())))
    assert again == comparison


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "has no results.json; pass a run folder (reports/<run>/) written by a finished harness session"),
        ("{not json", "is not readable JSON"),
        ('{"format": "pytest-benchmark"}', 'is not a harness results file (no "format": "onnx-slm-harness-results")'),
        (json.dumps({"format": FORMAT, "schema_version": 9}), "has results schema version 9; this harness reads up "
                                                               "to 2: upgrade onnx-slm-harness to compare it"),
    ],
    ids=["no-results", "not-json", "other-format", "newer-schema"],
)
def test_unreadable_runs_are_one_line(tmp_path: Path, content: str | None, problem: str) -> None:
    if content is not None:
        (tmp_path / "results.json").write_text(content, encoding="utf-8")
    with pytest.raises(CompareError) as caught:
        load_run(tmp_path)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_baseline_from_a_folder_of_runs_is_the_newest_matching_one(tmp_path: Path) -> None:
    write_run(tmp_path, "old", decode=rounds(100, 0.05), started="2026-11-20T10:00:00+00:00")
    newer = write_run(tmp_path, "newer", decode=rounds(100, 0.05), started="2026-11-22T10:00:00+00:00")
    write_run(tmp_path, "other-machine", decode=rounds(100, 0.05), started="2026-11-23T10:00:00+00:00",
              key={**KEY, "machine": "elsewhere"})
    current = write_run(tmp_path, "current", decode=rounds(100, 0.05), started="2026-11-24T10:00:00+00:00")
    picked, why = pick_baseline(tmp_path, KEY, exclude=current)
    assert picked is not None and picked.path.parent == newer and why == ""
    none, why = pick_baseline(tmp_path, {**KEY, "precision": "fp32"}, exclude=current)
    assert none is None and why.startswith(f"none of the 3 earlier runs in {tmp_path} has this run's key properties")
    # the newest *earlier* run: a run that started after the current one is never its baseline
    picked, _ = pick_baseline(tmp_path, KEY, before="2026-11-21T10:00:00+00:00")
    assert picked is not None and picked.name == "old"
    with pytest.raises(CompareError, match="started after this one; the baseline must be an earlier run"):
        pick_baseline(tmp_path, KEY, before="2026-11-01T10:00:00+00:00")


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda folder: folder.mkdir(), "holds no run (no <run>/results.json in it); check the path"),
        (
            lambda folder: (
                (folder / "run").mkdir(parents=True)
                or (folder / "run" / "results.json").write_text("{bad", encoding="utf-8")
            ),
            "holds a run that cannot be read: ",
        ),
        (lambda folder: None, "no such file or folder"),
    ],
    ids=["empty-folder", "corrupt-run", "mistyped"],
)
def test_a_broken_baseline_is_an_error_never_a_silent_not_compared(tmp_path: Path, make: Any, problem: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    current = write_run(tmp_path / "current", "run", decode=rounds(100, 0.05))
    make(tmp_path / "baseline")
    with pytest.raises(CompareError, match=re.escape(problem)):
        pick_baseline(tmp_path / "baseline", KEY)
    assert cli.main(["compare", str(tmp_path / "baseline"), str(current)]) == cli.EXIT_USAGE
    assert problem in capsys.readouterr().err


def test_no_baseline_yet_is_an_explicit_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    current = write_run(tmp_path / "current", "run", decode=rounds(100, 0.05))
    assert cli.main(["compare", str(tmp_path / "baseline"), str(current), "--no-baseline-ok"]) == cli.EXIT_OK
    assert "not compared: no baseline yet" in capsys.readouterr().out
    (tmp_path / "baseline" / "run").mkdir(parents=True)
    # there is one, and it is broken
    (tmp_path / "baseline" / "run" / "results.json").write_text("{bad", encoding="utf-8")
    assert cli.main(["compare", str(tmp_path / "baseline"), str(current), "--no-baseline-ok"]) == cli.EXIT_USAGE


def test_a_run_compared_with_itself_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path, "run", decode=rounds(100, 0.05))
    assert cli.main(["compare", str(run), str(run / "results.json")]) == cli.EXIT_USAGE
    assert "are the same run (run); compare it with an earlier run" in capsys.readouterr().err


# -- the command line ---------------------------------------------------------------------------------
def test_compare_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write_run(tmp_path, "base", decode=rounds(100, 0.05))
    same = write_run(tmp_path, "same", decode=rounds(100, 0.05, seed=7))
    slow = write_run(tmp_path, "slow", decode=rounds(80, 0.05, seed=7))
    assert cli.main(["compare", str(base), str(same)]) == cli.EXIT_OK
    assert cli.main(["compare", str(base), str(slow / "results.json")]) == cli.EXIT_REGRESSION
    out = capsys.readouterr().out
    assert "harness: no regression: same against base: 1 metrics compared" in out
    assert f"REGRESSION   {TEST} decode_tokens_per_s" in out
    assert cli.main(["compare", str(base), str(tmp_path / "missing")]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (f"harness: {tmp_path / 'missing'}: no such file or folder; pass a run folder "
                                       "(reports/<run>/) or its results.json\n")
    with pytest.raises(SystemExit) as bad_argument:
        cli.main(["compare", str(base), str(same), "--timing-threshold", "ten"])
    assert bad_argument.value.code == cli.EXIT_USAGE
    assert "'ten' is not a number; write a fraction such as 0.1 for 10%" in capsys.readouterr().err


def test_compare_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write_run(tmp_path, "base", decode=rounds(100, 0.05))
    slow = write_run(tmp_path, "slow", decode=rounds(80, 0.05, seed=7))
    assert cli.main(["compare", str(base), str(slow), "--format", "json"]) == cli.EXIT_REGRESSION
    assert json.loads(capsys.readouterr().out)["regressions"] == 1
    cli.main(["compare", str(base), str(slow), "--format", "markdown"])
    assert "| `" + TEST + "` | decode_tokens_per_s |" in capsys.readouterr().out


def test_internal_error_has_its_own_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    base = write_run(tmp_path, "base", decode=rounds(100, 0.05))

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("tests")

    monkeypatch.setattr(cli, "compare_runs", broken)
    other = write_run(tmp_path, "other", decode=rounds(100, 0.05))
    assert cli.main(["compare", str(base), str(other)]) == cli.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("harness: internal error: KeyError: 'tests' (please report it") and "Traceback" in err


def test_history_prints_a_trend_table_and_draws_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    for day, center in enumerate((100, 104, 98, 80), start=20):
        write_run(tmp_path, f"run-{day}", decode=rounds(center, 0.01), started=f"2026-11-{day}T10:00:00+00:00")
    write_run(tmp_path, "run-24", decode=rounds(100, 0.01), started="2026-11-24T10:00:00+00:00",
              key={**KEY, "machine": "elsewhere"})
    assert cli.main(["history", str(tmp_path)]) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[1:6]] == [["run-20", "A"], ["run-21", "A"], ["run-22", "A"],
                                                          ["run-23", "A"], ["run-24", "B"]]
    assert lines[6].split()[1] == "▇█▆▁▇"
    assert f"[1] decode_tokens_per_s  {TEST}" in lines
    assert any(line.startswith("key B: model hash abababababab, precision int4, execution provider cpu, machine "
                               "elsewhere") for line in lines)
    html = (tmp_path / "history.html").read_text(encoding="utf-8")
    assert 'id="history-decode_tokens_per_s"' in html
    assert html.count("<circle") == 4 + 1 and html.count("<rect") >= 1 + 1  # key A's line, key B's; and the legend
    assert html.count('href="./run-20/report.html"') == 2  # the axis label and the runs table


def test_history_draws_a_line_per_check_marks_failed_runs_and_lists_the_newest_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path, "run-20", decode=rounds(100, 0.01), started="2026-11-20T10:00:00+00:00", copies=2)
    failed = write_run(tmp_path, "run-21", decode=rounds(50, 0.01), started="2026-11-21T10:00:00+00:00", copies=2)
    data = json.loads((failed / "results.json").read_text(encoding="utf-8"))
    data["tests"][0]["outcome"], data["totals"], data["run"]["exit_status"] = "failed", {"passed": 1, "failed": 1}, 1
    (failed / "results.json").write_text(json.dumps(data), encoding="utf-8")
    assert cli.main(["history", str(tmp_path)]) == cli.EXIT_OK
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:3]]
    assert [row[:3] for row in rows] == [["run-20", "A", "passed"], ["run-21", "A", "failed"]]
    html = (tmp_path / "history.html").read_text(encoding="utf-8")
    assert html.count('class="series"') == 2  # a line per check: never a median over whichever checks ran
    assert html.count('<line class="failed"') == 1  # the failed run is marked, not left out
    runs_table = html.split("Runs, newest first")[1]
    assert runs_table.index("run-21") < runs_table.index("run-20")


def test_history_of_a_folder_without_runs_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["history", str(tmp_path)]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith(f"harness: {tmp_path} holds no run with a results.json")


def test_compare_lists_changes_unless_asked_for_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write_run(tmp_path, "base", decode=rounds(100, 0.05))
    same = write_run(tmp_path, "same", decode=rounds(100, 0.05, seed=7))
    assert cli.main(["compare", str(base), str(same)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "WITHIN" not in out and "(1 metrics within their limit not listed; --all lists them)" in out
    assert cli.main(["compare", str(base), str(same), "--all"]) == cli.EXIT_OK
    assert f"WITHIN       {TEST} decode_tokens_per_s" in capsys.readouterr().out


def test_inconclusive_warns_or_fails_and_nothing_compared_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write_run(tmp_path, "base", decode=rounds(100, 0.05))
    noisy = write_run(tmp_path, "noisy", decode=rounds(85, 0.6, seed=2))
    assert cli.main(["compare", str(base), str(noisy)]) == cli.EXIT_OK
    assert f"INCONCLUSIVE {TEST} decode_tokens_per_s" in capsys.readouterr().out
    assert cli.main(["compare", str(base), str(noisy), "--inconclusive=fail"]) == cli.EXIT_REGRESSION
    capsys.readouterr()
    other = write_run(tmp_path, "other", quality={"kl_mean": 0.1})
    assert cli.main(["compare", str(base), str(other)]) == cli.EXIT_USAGE
    assert "harness: not compared with base: no metric of other has a counterpart" in capsys.readouterr().out
    assert cli.main(["compare", str(base), str(other), "--no-baseline-ok"]) == cli.EXIT_OK


def test_identical_values_read_as_no_change() -> None:
    delta = compare_metric("q", "ppl_ratio", [1.25], [1.25], Thresholds())
    assert delta.verdict == "within" and delta.note == "identical" and "(0%;" in delta.line()


def test_a_closed_pipe_keeps_the_verdicts_exit_code(tmp_path: Path) -> None:
    """``harness compare A B | head -c 1`` under pipefail: the regression's exit 1, not an internal error.

    The pipe is made here, not by a shell (none is the same on every OS), and its reader is gone before the command
    writes: every write fails (BrokenPipeError on POSIX, OSError EINVAL on Windows)."""
    base = write_run(tmp_path, "base", decode=rounds(100, 0.05))
    slow = write_run(tmp_path, "slow", decode=rounds(80, 0.05, seed=7))
    with subprocess.Popen([sys.executable, "-m", "harness.cli", "compare", str(base), str(slow), "--all"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()
        stderr = child.stderr.read().decode("utf-8", "replace")
        code = child.wait(timeout=120)
    assert code == cli.EXIT_REGRESSION, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Errno" not in stderr, stderr


def test_history_keeps_to_the_terminal_width(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    for day in range(20, 23):
        write_run(tmp_path, f"run-{day}", decode=rounds(100, 0.01), started=f"2026-11-{day}T10:00:00+00:00",
                  copies=6)
    monkeypatch.setenv("COLUMNS", "80")
    assert cli.main(["history", str(tmp_path), "--no-plot"]) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "(+3 columns too wide to show: pick with --metric, --test)" in lines  # the verdict column took one


def test_version_and_gates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as shown:
        cli.main(["--version"])
    assert shown.value.code == 0 and capsys.readouterr().out.startswith("harness 0.1.0 (onnxruntime-genai ")
    (tmp_path / "pyproject.toml").write_text("[tool.harness.gates]\nparity_ppl_ratio_max = 2\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["gates"]) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["gate", "limit", "default", "source"]
    ppl = next(line for line in lines if line.startswith("parity_ppl_ratio_max"))
    assert ppl.split()[1:4] == ["<=", "2", "1.45"]
    assert ppl.endswith(f"[tool.harness.gates] in {tmp_path / 'pyproject.toml'}")
    clock = next(line for line in lines if line.startswith("benchmark_clock_gap_max"))
    assert clock.split()[1:] == ["<=", "0.1", "0.1", "default"]


def test_no_baseline_yet_when_the_folder_holds_only_this_run(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A first CI run compares reports/ with reports/<its run>: the folder holds no run but the current one."""
    current = write_run(tmp_path, "run", decode=rounds(100, 0.05))
    assert cli.main(["compare", str(tmp_path), str(current), "--no-baseline-ok"]) == cli.EXIT_OK
    assert "not compared: no baseline yet" in capsys.readouterr().out
    assert cli.main(["compare", str(tmp_path), str(current)]) == cli.EXIT_USAGE


def test_gates_set_for_a_conftest_gate_are_listed_not_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.harness.gates]\nanswer_words_max = 40\n[tool.pytest.ini_options]\n'
        'harness_gates = ["parity_kl_mean_max = 0.4"]\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["gates"]) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("answer_words_max") and "a conftest's gate" in line for line in lines)
    kl = next(line for line in lines if line.startswith("parity_kl_mean_max"))
    assert kl.split()[1:3] == ["<=", "0.4nats"] or kl.split()[1:3] == ["<=", "0.4"], kl
    assert "harness_gates in [tool.pytest.ini_options]" in kl


def test_single_measurements_are_one_line_in_the_text_output(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """An input-length check's TTFT is one measurement: no noise estimate, so each is inconclusive; listing each
    buried what changed (18 lines on a real run)."""
    baseline = write_run(tmp_path, "a", decode=[100.0], copies=5, started="2026-11-24T10:00:00+00:00")
    current = write_run(tmp_path, "b", decode=[101.0], copies=5, started="2026-11-24T11:00:00+00:00")
    cli.main(["compare", str(baseline), str(current)])
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if "INCONCLUSIVE" in line and "round" in line] == [
        "  INCONCLUSIVE 5 single measurements (decode_tokens_per_s): fewer than 3 rounds give no noise estimate; "
        "--all lists them"]
    cli.main(["compare", str(baseline), str(current), "--all"])
    assert sum("1 round(s)" in line for line in capsys.readouterr().out.splitlines()) == 5
