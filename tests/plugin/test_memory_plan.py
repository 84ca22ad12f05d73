"""The memory plan through the plugin, with the fakes: the header prints it, a suite that cannot fit skips, a suite
that cannot fit the fp32-compute twin judges the model as built alone and says so in every verdict, and a bad
--harness-memory is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.capacity.model_facts import model_facts
from harness.capacity.plan import copy_bytes, suite_need
from harness.locations import suites_dir
from harness.testing.fakes import write_hf_folder
from tests.plugin.test_stability import CONFTEST

GENERATION = str(suites_dir() / "test_generation.py")


@pytest.fixture
def model(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fakes as a plugin module (the shipped suites sit outside this folder, so not a conftest)."""
    pytester.syspathinsert()
    pytester.makepyfile(fake_plugin=CONFTEST)
    monkeypatch.setenv("FAKE_LEVEL", "4")  # an int4 model: it has an fp32-compute twin
    monkeypatch.delenv("HARNESS_MODEL", raising=False)
    return write_hf_folder(pytester.path / "hf")


def run(pytester: pytest.Pytester, model: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "fake_plugin", f"--model={model}", f"--harness-cache-dir={pytester.path / 'cache'}",
                              f"--harness-reports={pytester.path / 'reports'}", GENERATION, "-rs", *args)


def built_folder(pytester: pytest.Pytester) -> Path:
    (folder,) = [p for p in (pytester.path / "cache" / "onnx").iterdir() if (p / "genai_config.json").is_file()
                 and not (p / ".harness-entry.json").read_text(encoding="utf-8").count("derived_from")]
    return folder


def test_the_header_prints_the_plan_and_a_suite_it_cannot_fit_skips(pytester: pytest.Pytester, model: Path) -> None:
    roomy = run(pytester, model)
    roomy.stdout.fnmatch_lines(["harness: memory * (available on this machine); plan: *the suites up to * (*); "
                                "peak *: fits"])
    assert roomy.ret == 0
    tight = run(pytester, model, "--harness-memory=1MiB")
    tight.stdout.fnmatch_lines(["harness: memory 1 MiB (what --harness-memory allows, from the command line); "
                                "plan: *; cannot fit, so will skip: *test_generation.py*"])
    tight.stdout.fnmatch_lines(["SKIPPED * memory plan: test_generation.py needs about * at its peak (*), and 1 "
                                "MiB is what --harness-memory allows, from the command line; pass --harness-memory "
                                "if this machine has more, or run this suite on a larger machine"])
    assert tight.parseoutcomes() == {"skipped": 4}


def test_a_suite_without_room_for_the_twin_judges_the_model_as_built_and_says_so(pytester: pytest.Pytester,
                                                                                 model: Path) -> None:
    assert run(pytester, model).ret == 0  # builds into the cache
    built = built_folder(pytester)
    facts, size = model_facts(built), model_facts(built).weight_bytes
    need = suite_need("test_generation.py", facts, size).bytes
    between = need - copy_bytes(facts, size) // 2  # room for the model, not for its twin beside it
    result = run(pytester, model, f"--harness-memory={between}")
    assert result.ret == 0 and result.parseoutcomes() == {"passed": 4}
    result.stdout.fnmatch_lines(["harness: test_generation.py: no fp32-compute twin: the memory plan gives "
                                 "test_generation.py * with the twin (*) and * without it; * is what "
                                 "--harness-memory allows, from the command line"])
    result.stdout.fnmatch_lines(["*= harness: findings =*", "FINDING no-fp32-twin *test_generation.py::*",
                                 "  judged as built only, on no fp32-compute twin (the verdict may hang on a near-tie "
                                 "another CPU breaks): the memory plan gives *"])
    results = sorted((pytester.path / "reports").glob("*/results.json"))[-1]  # the run that judged without the twin
    judged = [test["properties"]["compute_paths"] for test in json.loads(results.read_text(encoding="utf-8"))["tests"]]
    assert judged == [{"as built (accuracy_level 4)": "passed"}] * 4


def test_a_bad_memory_size_is_one_line(pytester: pytest.Pytester, model: Path) -> None:
    result = run(pytester, model, "--harness-memory=lots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: harness: --harness-memory 'lots' (from the command line) is not a memory "
                                 "size above zero, e.g. 8GiB, 7.5GB or 512MiB"])
