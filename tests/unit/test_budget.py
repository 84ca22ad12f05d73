"""--harness-budget: durations, and the profile fitted to a model's speed, never below a statistic's floor."""

from __future__ import annotations

import pytest

from harness.budget import FLOORS, REFERENCE_DECODE_TPS, fit, parse_duration
from harness.builtins import BUILTIN_PROFILES

SMOKE, FULL = BUILTIN_PROFILES


@pytest.mark.parametrize(("raw", "seconds"), [("90", 90), ("150s", 150), ("2.5m", 150), ("3min", 180), ("1h", 3600)])
def test_durations(raw: str, seconds: float) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["", "soon", "-5s", "0", "5 weeks"])
def test_bad_durations(raw: str) -> None:
    with pytest.raises(ValueError, match="is not a duration above zero"):
        parse_duration(raw)


def test_a_model_as_fast_as_the_default_fits_the_smoke_profile_in_its_measured_time() -> None:
    scaling = fit(SMOKE, 150, REFERENCE_DECODE_TPS)
    assert scaling.factor == 1 and scaling.profile == SMOKE
    assert scaling.lines() == [f"budget 150 s: the model decodes {REFERENCE_DECODE_TPS:.0f} tokens/s (1.00x the "
                               "default model's); the smoke profile would take about 122 s: it fits, nothing scaled"]


def test_a_model_ten_times_slower_is_scaled_to_the_budget_and_says_what_it_costs() -> None:
    scaling = fit(SMOKE, 150, REFERENCE_DECODE_TPS / 10)
    assert 1000 < scaling.predicted_s < 1200 and 0.12 < scaling.factor < 0.15
    profile = scaling.profile
    assert profile.memory_generations == FLOORS["memory_generations"] and profile.benchmark_rounds == 3
    assert profile.fuzz_examples == FLOORS["fuzz_examples"] and profile.max_prompt_tokens == 277
    lines = scaling.lines()
    assert lines[0].endswith("the smoke profile would take about 1110 s: sample counts scaled by 0.14")
    assert "  memory_generations 40 -> 20: the leak slope's 95% interval widens 2.8x" in lines
    assert "  benchmark_rounds 5 -> 3: a median's noise grows 1.3x" in lines
    assert "  fuzz_examples 20 -> 5: a defect in 5% of inputs is found with probability 23% instead of 64%" in lines


def test_counts_already_at_their_floor_stay() -> None:
    assert fit(FULL, 1, 1.0).profile.load_cycles == FLOORS["load_cycles"]
    assert fit(FULL, 1, 1.0).profile.max_prompt_tokens is None  # the full profile's "up to the context" stays
