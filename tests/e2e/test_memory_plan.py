"""The memory plan on the real default model, under a real memory cap (a memory control group, else an address-space
limit): a run the cap cannot hold is refused at start in one line, before anything is built; a run the plan admits
under a cap of its predicted peak finishes, with nothing killed for memory."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from harness.capacity.memory import GIB, Available
from harness.capacity.model_facts import model_facts
from harness.capacity.plan import load_bytes, suite_need
from harness.session import HarnessSession
from tests.e2e.support import ROOT, capped_run

SUITES = ("test_generation.py", "test_foundry_local.py", "test_malformed.py")
MB = 1024**2


def pytest_command(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--harness-reports={tmp_path / 'reports'}",
            *args]


def test_a_run_the_cap_cannot_hold_is_refused_at_start_in_one_line(tmp_path: Path) -> None:
    cache = tmp_path / "cache"  # empty: the GGUF conversion and the build would run first
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cache)}
    run = capped_run(pytest_command(tmp_path, "suites/test_generation.py"), 600 * MB, env)
    refusals = [line for line in run.output.splitlines() if "memory plan:" in line]
    assert run.returncode == 4, run.output[-3000:]
    assert len(refusals) == 1, run.output[-3000:]
    assert refusals[0].startswith("ERROR: harness: memory plan: the GGUF conversion needs about "), refusals
    assert any(words in refusals[0] for words in ("is the room under this control group's memory limit",
                                                   "is the address-space limit")), refusals
    assert "Traceback" not in run.output and run.oom_kills == 0
    assert not list(cache.glob("hf/*")) and not list(cache.glob("onnx/*")), "something was built before the refusal"


def test_a_run_the_plan_admits_finishes_under_a_cap_of_its_predicted_peak(built: HarnessSession,
                                                                           tmp_path: Path) -> None:
    memory = built.plan_memory(2048, Available(2**50, "unlimited"))  # the smoke profile's longest prompt
    cap = max(memory.suites[name].bytes for name in SUITES)
    selected = ["-k", "not test_invalid_setting or raw-top-k"]  # the input cases, and one raw setting
    run = capped_run(pytest_command(tmp_path, *(f"suites/{name}" for name in SUITES), *selected), cap,
                     cwd=ROOT)
    assert run.oom_kills == 0 and run.returncode == 0, f"under {run.cap}:\n{run.output[-3000:]}"
    assert "memory plan" not in run.output  # nothing skipped for memory: the cap is the plan's own figure


def test_a_suite_whose_copies_cannot_sit_beside_the_session_model_runs_with_it_released(
        built: HarnessSession, tmp_path: Path) -> None:
    """Between the malformed suite's need beside the session's model and its need with that model released: the
    generation suite loads the model, the malformed suite runs with it released (its worker holds its own copy)."""
    assert built.prepared is not None
    facts, size = model_facts(built.prepared.path), model_facts(built.prepared.path).weight_bytes
    beside = suite_need("test_malformed.py", facts, size).bytes
    alone = suite_need("test_malformed.py", facts, size, released=True).bytes
    generation = suite_need("test_generation.py", facts, size).bytes
    memory = max(alone, generation) + (beside - max(alone, generation)) // 2
    assert max(alone, generation) < memory < beside
    run = capped_run(pytest_command(tmp_path, "suites/test_generation.py", "suites/test_malformed.py", "-k",
                                    "test_generation or emoji or cjk", f"--harness-memory={memory}"), 4 * GIB)
    assert run.returncode == 0, run.output[-3000:]
    assert "harness: test_malformed.py: the session's model released while it runs: test_malformed.py needs " \
           in run.output, run.output[-3000:]


def test_the_ab_baseline_is_planned_beside_the_model_under_test(built: HarnessSession) -> None:
    """--harness-ab loads the baseline and a second copy of the model under test for the benchmarks."""
    assert built.prepared is not None
    unlimited = Available(2**50, "unlimited")
    alone = built.plan_memory(2048, unlimited).suites["test_benchmarks.py"]
    both = replace(built, ab_source=built.source, ab_model=built.prepared).plan_memory(2048, unlimited)
    facts = model_facts(built.prepared.path)
    assert both.suites["test_benchmarks.py"].bytes == alone.bytes + 2 * load_bytes(facts, facts.weight_bytes)
    assert "the A/B baseline's 83 MiB of resident weights and a second copy of the model's" in both.suites[
        "test_benchmarks.py"].basis
    assert both.suites["test_parity.py"] == built.plan_memory(2048, unlimited).suites["test_parity.py"]  # only there
