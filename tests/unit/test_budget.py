"""--harness-budget: durations, and the profile fitted to a model's speed, never below a statistic's floor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from harness.checks.ab import AB_MIN_PAIRS
from harness.checks.lengths import LENGTHS
from harness.config.budget import (
    ANSWER_LIMIT,
    ANSWER_SHARE,
    FLOORS,
    MODEL_BOUND,
    OUTSIDE_SECONDS,
    REFERENCE_ANSWER_TOKENS,
    REFERENCE_DECODE_TPS,
    SECONDS_PER_UNIT,
    BudgetClock,
    Pace,
    ab_seconds,
    fit,
    measure_pace,
    predict,
    predict_suites,
)
from harness.config.profiles import BUILTIN_PROFILES
from harness.config.settings import parse_duration
from harness.errors import RuntimeFailure
from harness.runtime.protocol import Message
from harness.testing.fakes import FakeRuntime, write_genai_folder

SMOKE, FULL = BUILTIN_PROFILES


@pytest.mark.parametrize(("raw", "seconds"), [("90", 90), ("150s", 150), ("2.5m", 150), ("3min", 180), ("1h", 3600)])
def test_durations(raw: str, seconds: float) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["", "soon", "-5s", "0", "5 weeks"])
def test_bad_durations(raw: str) -> None:
    with pytest.raises(ValueError, match="is not a duration above zero"):
        parse_duration(raw)


CONTEXT = 8192  # the default model's
DEFAULT_PACE = Pace(REFERENCE_DECODE_TPS)


def slower(times: float) -> Pace:
    return Pace(REFERENCE_DECODE_TPS / times)


def test_a_model_as_fast_as_the_default_fits_the_smoke_profile_in_its_measured_time() -> None:
    scaling = fit(SMOKE, 150, DEFAULT_PACE, CONTEXT)
    assert scaling.factor == 1 and scaling.profile == SMOKE
    assert 100 < scaling.predicted_s < 150  # measured: 122 s (README, "Where a smoke run's time goes")
    assert scaling.lines() == [f"budget 150 s: the model decodes {REFERENCE_DECODE_TPS:.0f} tokens/s (1.00x the "
                               "default model's) and answers in 10 tokens (1.0x); the smoke profile would take about "
                               f"{scaling.predicted_s:.0f} s: it fits, nothing scaled"]


def test_the_prediction_adds_each_count_at_its_measured_cost() -> None:
    more = replace(SMOKE, memory_generations=SMOKE.memory_generations + 10)
    extra = predict(more, CONTEXT, DEFAULT_PACE) - predict(SMOKE, CONTEXT, DEFAULT_PACE)
    assert extra == pytest.approx(10 * SECONDS_PER_UNIT["memory_generations"])
    half_speed = predict(SMOKE, CONTEXT, slower(2)) / predict(SMOKE, CONTEXT, DEFAULT_PACE)
    assert half_speed == pytest.approx(1 + MODEL_BOUND)


def test_a_model_ten_times_slower_is_scaled_to_finish_near_the_budget_and_says_what_it_costs() -> None:
    scaling = fit(SMOKE, 1000, slower(10), CONTEXT)
    assert scaling.predicted_s > 900 and 0 < scaling.factor < 1
    assert 950 < scaling.scaled_s <= 1000  # near the budget, not far under it
    assert scaling.scaled_s == pytest.approx(predict(scaling.profile, CONTEXT, slower(10)))
    profile = scaling.profile
    assert all(FLOORS[name] <= getattr(profile, name) <= getattr(SMOKE, name) for name in FLOORS)
    assert profile.max_prompt_tokens in LENGTHS  # cut to a length the suite measures
    lines = scaling.lines()
    assert lines[0].endswith(f"the smoke profile would take about {scaling.predicted_s:.0f} s: sample counts "
                             f"scaled by {int(scaling.factor * 100) / 100:.2f}, to about {scaling.scaled_s:.0f} s")
    after = profile.memory_generations
    assert (f"  memory_generations 40 -> {after}: the leak slope's 95% interval widens {(40 / after) ** 1.5:.1f}x"
            in lines)
    assert any(line.startswith("  fuzz_examples 20 -> ") and "a defect in 5% of inputs is found with probability"
               in line for line in lines)


def test_a_budget_below_the_floors_runs_the_floors_and_says_so() -> None:
    scaling = fit(FULL, 1, Pace(1.0), CONTEXT)
    assert all(getattr(scaling.profile, name) == floor for name, floor in FLOORS.items())
    assert scaling.lines()[0].endswith(f"every sample count at its floor, about {scaling.scaled_s:.0f} s: the budget "
                                       "is too short for it")
    assert "  max_prompt_tokens the context -> 256: prompts above 256 tokens go untested" in scaling.lines()


def test_a_run_of_some_suites_is_planned_for_those_alone() -> None:
    some = ("test_generation.py", "test_fuzz.py")
    assert predict(SMOKE, CONTEXT, DEFAULT_PACE, some) < predict(SMOKE, CONTEXT, DEFAULT_PACE) / 3
    suites = predict_suites(SMOKE, CONTEXT, DEFAULT_PACE)
    assert predict(SMOKE, CONTEXT, DEFAULT_PACE, some, correction=2.0) == pytest.approx(
        2 * (OUTSIDE_SECONDS + suites["test_generation.py"] + suites["test_fuzz.py"]))


def test_the_clock_refits_what_is_left_after_each_suite_with_the_correction_it_learnt() -> None:
    suites = ("test_benchmarks.py", "test_cases.py", "test_memory.py", "test_fuzz.py")
    pace = slower(4)
    clock = BudgetClock(720.0, 0.0, pace, SMOKE, CONTEXT, suites)
    first = clock.enter("test_benchmarks.py", 10.0)
    assert first[0].startswith("budget 720 s (10 s spent before the first check): the model decodes ")
    assert first[-1].startswith("test_benchmarks.py: about ") and first[-1].endswith("710 s of the 720 s budget left")
    planned = clock.scaling
    assert planned is not None and planned.profile.memory_generations == SMOKE.memory_generations  # it fits
    took = 3 * clock.predicted["test_benchmarks.py"]  # the model answers three times longer than predicted
    lines = clock.enter("test_cases.py", 10.0 + took)
    assert clock.took["test_benchmarks.py"] == pytest.approx(took)
    assert clock.correction() == pytest.approx(3.0)
    assert lines[0] == (f"test_cases.py: about {clock.predicted['test_cases.py']:.0f} s predicted, x3.00 after the "
                        f"suites so far; {720 - 10 - took:.0f} s of the 720 s budget left")
    assert lines[1].startswith(f"  counts refitted: memory_generations {SMOKE.memory_generations} -> ")
    refit = clock.scaling
    assert refit is not None and refit.profile.memory_generations < SMOKE.memory_generations  # caught up with
    left = 720 - 10 - took
    assert refit.scaled_s <= left and refit.scaled_s == pytest.approx(
        predict(refit.profile, CONTEXT, pace, ("test_cases.py", "test_memory.py", "test_fuzz.py"), 3.0))


def test_a_refit_that_cannot_catch_up_says_the_run_will_overrun() -> None:
    suites = ("test_cases.py", "test_memory.py", "test_fuzz.py")
    clock = BudgetClock(300.0, 0.0, DEFAULT_PACE, SMOKE, CONTEXT, suites)
    clock.enter("test_cases.py", 0.0)
    lines = clock.enter("test_memory.py", 290.0)  # the first suite took nearly all of it
    assert lines[-1].startswith("  even at these counts the run needs about ") and lines[-1].endswith(
        "s of the 300 s budget: it will overrun")
    assert clock.scaling is not None and clock.scaling.profile.memory_generations == FLOORS["memory_generations"]


def test_a_model_that_answers_at_length_costs_more_in_the_answer_bound_suites_alone() -> None:
    terse, verbose = predict_suites(SMOKE, CONTEXT, DEFAULT_PACE), predict_suites(SMOKE, CONTEXT,
                                                                                  Pace(REFERENCE_DECODE_TPS, 95.0))
    for suite, seconds in terse.items():  # ten times the default model's answer length
        assert verbose[suite] == pytest.approx(seconds * (1 + 9 * ANSWER_SHARE.get(suite, 0.0)))
    assert verbose["test_cases.py"] > 3.5 * terse["test_cases.py"]  # measured: 3.9x on a 1.5B model
    assert verbose["test_benchmarks.py"] == terse["test_benchmarks.py"]  # fixed-length generations
    first = fit(SMOKE, 600, Pace(REFERENCE_DECODE_TPS / 4, 95.0), CONTEXT)
    assert first.lines()[0].startswith("budget 600 s: the model decodes 42 tokens/s (0.25x the default model's) and "
                                       "answers in 95 tokens (10.0x); the smoke profile would take about ")
    assert first.predicted_s > predict(SMOKE, CONTEXT, slower(4)) + 100  # seen in the first fit, not after a suite


def test_the_pace_is_measured_from_the_models_own_answers(tmp_path: Path) -> None:
    folder = write_genai_folder(tmp_path / "model")
    terse = measure_pace(FakeRuntime(folder, answer=lambda prompt: "Berlin."))
    assert terse.answer_tokens == len("Berlin.") + 1  # the end-of-turn token counts
    assert terse.decode_tps > 0
    assert measure_pace(FakeRuntime(folder, never_stops=True)).answer_tokens == ANSWER_LIMIT

    class NoTemplate(FakeRuntime):
        def chat_prompt(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
            raise RuntimeFailure("the model has no chat template", "")

    assert measure_pace(NoTemplate(folder, never_stops=True)).answer_tokens == REFERENCE_ANSWER_TOKENS  # as default


def test_an_ab_run_adds_the_baselines_rounds_to_the_benchmarks() -> None:
    """--harness-ab raises the benchmarks to 10 pairs and times the baseline in each: at smoke's 5 rounds that is
    2 x the 10-round suite, less the 5-round suite already planned."""
    suites = predict_suites(SMOKE, CONTEXT, DEFAULT_PACE)
    ten = predict_suites(replace(SMOKE, benchmark_rounds=10), CONTEXT, DEFAULT_PACE)["test_benchmarks.py"]
    ab = ab_seconds(SMOKE, CONTEXT, DEFAULT_PACE, AB_MIN_PAIRS)
    assert ab == pytest.approx(2 * ten - suites["test_benchmarks.py"])
    assert ab > suites["test_benchmarks.py"]
