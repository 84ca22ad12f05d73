"""Measure what ``--harness-budget`` predicts with: the seconds each sample count costs per unit.

    python benchmarks/budget_costs.py            # smoke, then full (about 10 min)
    python benchmarks/budget_costs.py --check    # then a profile between them, predicted and measured

Runs ``pytest suites`` on the default model (warm cache) in the smoke and the full profile. Each test's duration
comes from the run's results.json: summed by suite file in the smoke run, they are each suite's smoke seconds, and
what the session took beyond its tests is the time outside them; the difference between the runs, over the tests a
count drives, divided by the change in the count, is that count's cost per unit (prompt lengths are costed by their
tokens, ``budget.prompt_seconds``). Prints the constants for ``harness/budget.py``. ``--check`` then runs a profile
with every smoke count doubled (this module registers it as a plugin) and sets what ``budget.predict`` says of it
against its measured time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config.budget import COUNT_SUITES, FLOORS, REFERENCE_DECODE_TPS, counts_of, predict  # noqa: E402
from harness.config.profiles import BUILTIN_PROFILES, Profile  # noqa: E402

SMOKE, FULL = BUILTIN_PROFILES
# Every count doubled, and the prompt length uncapped (the smoke cap's double plans no longer prompt).
DOUBLED = dataclasses.replace(
    SMOKE, name="doubled", max_prompt_tokens=None,
    **{name: 2 * getattr(SMOKE, name) for name in FLOORS if name != "max_prompt_tokens"})
# Which count drives each test's duration (node id prefixes); every other test is fixed cost.
DRIVERS = (
    ("suites/test_memory.py::test_reused_generator", "memory_generations"),
    ("suites/test_memory.py::test_fresh_generator", "memory_generations"),
    ("suites/test_memory.py::test_model_load_unload", "load_cycles"),
    ("suites/test_memory.py::test_foundry_local_session_churn", "foundry_cycles"),
    ("suites/test_benchmarks.py", "benchmark_rounds"),
    ("suites/test_fuzz.py", "fuzz_examples"),
    ("suites/test_template.py", "template_examples"),
)
DEFAULT_CONTEXT = 8192  # the default model's context length (genai_config.json)


def pytest_harness_profiles(config: pytest.Config) -> Iterable[Profile]:
    """This module is also the plugin that adds the doubled profile to the measured session."""
    return (DOUBLED,)


def durations(profile: str) -> tuple[float, dict[str, float]]:
    """(wall seconds of the session, seconds per test node id)."""
    with tempfile.TemporaryDirectory() as work:
        reports = Path(work) / "reports"
        command = [sys.executable, "-m", "pytest", "suites", f"--harness-profile={profile}", "-q",
                   "-p", "no:cacheprovider", "-p", "benchmarks.budget_costs", f"--harness-reports={reports}"]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, encoding="utf-8")
        wall = time.perf_counter() - started
        found = sorted(reports.glob("*/results.json"))
        if not found:
            sys.exit(f"the {profile} run wrote no results (exit {done.returncode}):\n{done.stdout[-3000:]}")
        tests = json.loads(found[-1].read_text(encoding="utf-8"))["tests"]
        return wall, {test["nodeid"]: test["duration_s"] or 0.0 for test in tests}


def driver(nodeid: str) -> str | None:
    return next((name for prefix, name in DRIVERS if nodeid.startswith(prefix)), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="also predict and time a profile between the two")
    args = parser.parse_args()
    walls, runs = {}, {}
    for profile in (SMOKE, FULL):
        walls[profile.name], runs[profile.name] = durations(profile.name)
        print(f"{profile.name}: {walls[profile.name]:.1f} s", flush=True)
    base, more = counts_of(SMOKE, DEFAULT_CONTEXT), counts_of(FULL, DEFAULT_CONTEXT)
    grown = dict.fromkeys(COUNT_SUITES, 0.0)
    for nodeid, seconds in runs[FULL.name].items():
        name = driver(nodeid)
        if name is not None and nodeid in runs[SMOKE.name]:
            grown[name] += seconds - runs[SMOKE.name][nodeid]
    per_unit = {name: max(grown[name], 0.0) / (more[name] - base[name]) for name in grown}
    suites: dict[str, float] = {}
    for nodeid, seconds in runs[SMOKE.name].items():
        suite = nodeid.split("::")[0].rsplit("/", 1)[-1]
        suites[suite] = suites.get(suite, 0.0) + seconds
    print("\nSMOKE_SUITE_SECONDS = {" + ", ".join(f'"{name}": {value:.1f}' for name, value in sorted(suites.items()))
          + "}")
    print(f"OUTSIDE_SECONDS = {walls[SMOKE.name] - sum(suites.values()):.1f}")
    print("SECONDS_PER_UNIT = {" + ", ".join(f'"{name}": {cost:.4g}' for name, cost in per_unit.items()) + "}")
    if args.check:
        wall, _ = durations(DOUBLED.name)
        predicted = predict(DOUBLED, DEFAULT_CONTEXT, REFERENCE_DECODE_TPS)
        print(f"{DOUBLED.name}: predicted {predicted:.1f} s (harness/budget.py as it is), measured {wall:.1f} s")

if __name__ == "__main__":
    main()
