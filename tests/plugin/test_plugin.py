"""The plugin driven through pytester, with a fake builder and a fake runtime behind its hooks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.builtins import make_builder
from harness.config.settings import resolve
from harness.locations import suites_dir
from harness.session import HarnessSession
from harness.testing.fakes import write_genai_folder, write_hf_folder

GENERATION = suites_dir() / "test_generation.py"

CONFTEST = """
import os
from pathlib import Path
from harness.testing.fakes import FakeBuilder, FakeRuntime

def make_builder(settings):
    counter = os.environ.get("FAKE_COUNTER")
    return FakeBuilder(counter=Path(counter) if counter else None,
                       delay_s=float(os.environ.get("FAKE_DELAY", "0")),
                       error=os.environ.get("FAKE_ERROR"))

def pytest_harness_builders(config):
    return {"model-builder": make_builder}

def make_runtime(path, ep):
    return FakeRuntime(path, never_stops=bool(os.environ.get("FAKE_NEVER_STOPS")),
                       answer=lambda prompt: os.environ.get("FAKE_ANSWER", "Paris."))


def pytest_harness_runtime_factory(config):
    return make_runtime
"""


@pytest.fixture
def env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    pytester.makeconftest(CONFTEST)
    cache = pytester.path / "cache"
    counter = pytester.path / "builds.txt"
    monkeypatch.setenv("FAKE_COUNTER", str(counter))
    for name in ("HARNESS_MODEL", "HARNESS_PRECISION", "HARNESS_PROFILE", "FAKE_ERROR", "FAKE_NEVER_STOPS"):
        monkeypatch.delenv(name, raising=False)
    suite = pytester.path / "suite" / GENERATION.name
    suite.parent.mkdir()
    shutil.copy(GENERATION, suite)
    return {"cache": cache, "counter": counter, "model": write_hf_folder(pytester.path / "hf"), "suite": suite}


def run(pytester: pytest.Pytester, env: dict[str, Path], *args: str, suite: bool = True) -> pytest.RunResult:
    """The plugin on the fake model. By default only a copy of the shipped generation suite runs (the
    one the fake runtime can serve), inside the pytester folder so its conftest's fakes apply."""
    return pytester.runpytest(f"--model={env['model']}", f"--harness-cache-dir={env['cache']}", *args,
                              *([str(env["suite"])] if suite else []))


def builds(env: dict[str, Path]) -> int:
    return len(env["counter"].read_text(encoding="utf-8").split()) if env["counter"].exists() else 0


def test_model_runs_shipped_suites_and_builds_once(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    first = run(pytester, env, "-k", "test_generation", suite=False)  # no path: the shipped suites
    assert first.parseoutcomes()["passed"] == 4 and first.parseoutcomes()["deselected"] > 0
    first.stdout.fnmatch_lines(["*test_generation.py*"])
    first.stdout.fnmatch_lines(["harness: cache miss, will build into*", "*built int4 model in*"])
    second = run(pytester, env)
    second.assert_outcomes(passed=4)
    second.stdout.fnmatch_lines(["harness: cache hit *"])
    assert builds(env) == 1


def test_header_prints_what_reproduces_the_run(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    result = run(pytester, env, "--precision", "fp32", "--harness-profile", "smoke")
    model = env["model"]
    result.stdout.fnmatch_lines([
        f"harness: model {model} (hf-folder), sha256 *",
        "harness: precision fp32, builder fake (the fake builder of harness.testing.fakes), ep cpu, profile smoke, "
        "unstable verdicts warn",
        "harness: cache miss, will build into *",
        "harness: onnxruntime *, onnxruntime-genai *, transformers *, torch *, foundry-local-sdk *",
        "harness: cpu *, * cores, instruction set * (*)",
        "harness: compute accuracy levels known after the build",
        f"harness: reports {pytester.path / 'reports'}/*-hf-fp32",
    ])


def test_changing_precision_is_a_new_cache_entry(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    run(pytester, env, "--precision", "int4").assert_outcomes(passed=4)
    run(pytester, env, "--precision", "fp32").assert_outcomes(passed=4)
    run(pytester, env, "--precision", "int4").assert_outcomes(passed=4)
    assert env["counter"].read_text(encoding="utf-8").split() == ["int4", "fp32"]


def test_provenance_is_written_to_the_run_report(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    run(pytester, env).assert_outcomes(passed=4)
    (report,) = (pytester.path / "reports").iterdir()
    provenance = json.loads((report / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["source_kind"] == "hf-folder" and provenance["precision"] == "int4"
    assert provenance["cache_hit"] is False and provenance["builder"] == "fake"
    assert provenance["versions"]["onnxruntime-genai"] == "0.18.0"
    assert (
        (report / next(p.name for p in report.glob("build-*.log"))).read_text(encoding="utf-8").startswith("fake build")
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("missing", "ERROR: harness: --model */missing: no such file or folder; accepted: *"),
        ("empty", "ERROR: harness: --model */empty: the folder is empty; accepted: *"),
        ("corrupt", "ERROR: harness: --model */corrupt: genai_config.json is not valid JSON (*); "
                    "rebuild the model or fix the file"),
    ],
)
def test_bad_model_stops_at_start_with_one_line(
    pytester: pytest.Pytester, env: dict[str, Path], model: str, expected: str
) -> None:
    (pytester.path / "empty").mkdir()
    corrupt = write_genai_folder(pytester.path / "corrupt")
    (corrupt / "genai_config.json").write_text('{"model": ', encoding="utf-8")
    result = pytester.runpytest("--model", str(pytester.path / model))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert builds(env) == 0


def test_bad_setting_stops_at_start(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    result = run(pytester, env, "--precision", "int3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: harness: --precision 'int3' (from the command line) is not one of int4, int8, fp16, fp32"])


def test_failed_build_is_one_line_with_the_log(
    pytester: pytest.Pytester, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ERROR", "FP16 is not supported on CPU")
    result = run(pytester, env)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: harness: fake build failed: FP16 is not supported on CPU; full log: *.log"])
    result.assert_outcomes()  # nothing ran, nothing errored
    log = Path(result.stderr.str().split("full log: ")[1].split()[0])
    assert log.is_file()
    assert not any((env["cache"] / "onnx").glob("*")), "a failed build must not leave a cache entry"


def test_prebuilt_onnx_model_is_not_built(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    prebuilt = write_genai_folder(pytester.path / "prebuilt")
    result = pytester.runpytest(f"--model={prebuilt}", f"--harness-cache-dir={env['cache']}", str(env["suite"]))
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([f"harness: model {prebuilt} (onnx-genai), sha256 *",
                                 "harness: cache not needed (prebuilt ONNX model)"])
    assert builds(env) == 0


def test_seeded_defect_fails_the_suite(
    pytester: pytest.Pytester, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NEVER_STOPS", "1")
    result = run(pytester, env)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*no end-of-turn token within 96 tokens (eos ids [[]2[]])*"])


def test_plugin_is_inert_without_model_or_suites(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    plain = pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest(str(plain))
    result.assert_outcomes(passed=1)
    assert "harness:" not in result.stdout.str()


def test_model_loaded_once_per_session(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    pytester.makepyfile(
        """
        SEEN = []
        def test_a(harness_runtime):
            SEEN.append(id(harness_runtime))
        def test_b(harness_runtime):
            SEEN.append(id(harness_runtime))
            assert len(set(SEEN)) == 1 and not harness_runtime.closed
        """
    )
    run(pytester, env, "test_model_loaded_once_per_session.py", suite=False).assert_outcomes(passed=2)


def test_settings_from_pyproject(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    pytester.makepyprojecttoml('[tool.harness]\nprecision = "fp32"\nprofile = "smoke"\n')
    result = run(pytester, env)
    result.stdout.fnmatch_lines(["harness: precision fp32, builder fake (*), ep cpu, profile smoke, *"])


def test_two_concurrent_sessions_build_once(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--model={env['model']}",
               f"--harness-cache-dir={env['cache']}", str(env["suite"])]
    environment = {**os.environ, "FAKE_DELAY": "2"}
    processes = [subprocess.Popen(command, cwd=pytester.path, env=environment, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, encoding="utf-8") for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert builds(env) == 1
    assert sum("built int4 model in" in out for out in outputs) == 1


def test_concurrent_sessions_get_their_own_report_folders(
    pytester: pytest.Pytester, env: dict[str, Path]
) -> None:
    settings = resolve({"model": str(env["model"]), "cache_dir": str(env["cache"]),
                        "reports_dir": str(pytester.path / "reports")}, env={}, rootdir=pytester.path)
    sessions = [HarnessSession.open(settings, make_builder(settings)) for _ in range(3)]
    for session in sessions:
        session.started = "20260101-000000"  # all in the same second
    folders = [session.claim_run_dir() for session in sessions]
    assert [f.name for f in folders] == ["20260101-000000-hf-int4", "20260101-000000-hf-int4-2",
                                         "20260101-000000-hf-int4-3"]


def test_help_works_with_a_bad_environment_setting(
    pytester: pytest.Pytester, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_PRECISION", "int3")
    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*--model=PATH*"])


def test_a_foundry_folder_is_checked_with_its_own_inference_model_json(
    pytester: pytest.Pytester, env: dict[str, Path]
) -> None:
    shipped = write_genai_folder(pytester.path / "foundry-model")
    inference = json.dumps({"Name": "shipped", "PromptTemplate": {}})
    (shipped / "inference_model.json").write_text(inference, encoding="utf-8")
    pytester.makepyfile(test_shipped="def test_doc(harness_deployment):\n"
                                     "    assert harness_deployment.document['Name'] == 'shipped'\n")
    result = pytester.runpytest(f"--model={shipped}", f"--harness-cache-dir={env['cache']}", "test_shipped.py")
    result.assert_outcomes(passed=1)


HEAVY_MODULES = ("numpy", "yaml", "jsonschema", "onnxruntime_genai", "onnxruntime", "psutil", "filelock",
                 "harness.session", "harness.config.gates")


def test_a_run_that_does_not_engage_the_harness_imports_none_of_it(pytester: pytest.Pytester) -> None:
    """The entry point loads in every pytest run of the environment: it stays thin until --model (or the
    shipped suites) engages it (benchmarks/plugin_import.py measures its cost)."""
    pytester.makepyfile(test_other=f"""
        import sys

        def test_heavy_modules_are_not_loaded():
            assert [name for name in {HEAVY_MODULES!r} if name in sys.modules] == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_same_check_sees_an_engaged_run_load_them(pytester: pytest.Pytester) -> None:
    """The check above can fail: with --model (a prebuilt folder: nothing to build) the harness is engaged
    and its modules load."""
    pytester.makepyfile(test_other="""
        import sys

        def test_heavy_modules_are_loaded():
            assert {"yaml", "jsonschema", "harness.session", "harness.config.gates"} <= set(sys.modules)
    """)
    model = write_genai_folder(pytester.path / "model")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--model={model}",
                                           f"--harness-cache-dir={pytester.path / 'cache'}", "test_other.py")
    result.assert_outcomes(passed=1)
