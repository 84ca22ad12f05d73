"""torch and the rest of the ``convert`` extra are optional: where they are missing (win_arm64 has no torch wheel), the
steps that import them say so in one line before they start, and pyproject.toml installs them wherever they ship.

"Not installed" is simulated at run time: ``sys.modules[name] = None`` makes ``importlib.util.find_spec`` (and any
import) fail as it does where the package is absent, and the real entry points run under it.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import harness.checks.reference as reference
import harness.checks.reference_child as reference_child
from harness.errors import ConfigError, one_line
from harness.preparation import builders, convert, merge, optional
from harness.preparation.builders import ModelBuilderBuilder
from harness.preparation.optional import MissingPackages, require_build_packages
from harness.preparation.sources import ModelSource, SourceKind

ROOT = Path(__file__).resolve().parents[2]
ALL_STEP_MODULES = {*optional.GGUF_MODULES, *optional.MERGE_MODULES, *optional.MODEL_BUILDER_MODULES,
                    *optional.REFERENCE_MODULES}


def without(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """As if ``modules`` were not installed: importing or looking them up fails."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def on_windows_arm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "system", lambda: "Windows")
    monkeypatch.setattr(platform, "machine", lambda: "ARM64")


def no_child(*args: object, **kwargs: object) -> int:
    raise AssertionError("a child process was started although its packages are missing")


def assert_one_line_naming_the_fix(message: str, packages: str) -> None:
    assert "\n" not in message.removesuffix("\n")  # a child's stderr ends its line
    assert f"needs {packages}, which" in message
    assert "pip install 'onnx-slm-harness[convert]' where torch ships" in message


# -- the availability check ----------------------------------------------------------------------------------
def test_with_torch_installed_every_step_has_its_packages() -> None:
    """This host has the extra: nothing is missing, no step refuses, the reference is available."""
    assert optional.missing(ALL_STEP_MODULES) == []
    assert reference.reference_unavailable() is None
    gguf = ModelSource(Path("/m/model.gguf"), SourceKind.GGUF)
    require_build_packages(gguf, "model-builder", cached=False)  # raises nothing


def test_a_missing_module_is_found_missing_without_importing_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "torch")
    imported_before = set(sys.modules)
    assert optional.missing(["torch", "transformers", "onnx_ir"]) == ["torch"]
    assert {"transformers", "onnx_ir"} & (set(sys.modules) - imported_before) == set()  # looked up, not imported


def test_missing_torch_is_one_config_error_naming_the_extra_and_the_prebuilt_way(
        monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "torch")
    with pytest.raises(ConfigError) as caught:
        optional.require("converting --model /m/x.gguf (a GGUF) to a Hugging Face folder", optional.GGUF_MODULES)
    message = one_line(caught.value)
    assert message == ("harness: converting --model /m/x.gguf (a GGUF) to a Hugging Face folder needs torch, which is "
                       "not installed: pip install 'onnx-slm-harness[convert]' where torch ships, or give --model an "
                       "onnxruntime-genai folder built elsewhere (harness build)")


def test_on_windows_arm_the_line_says_why_torch_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "torch", "transformers")
    on_windows_arm(monkeypatch)
    reason = optional.missing_reason("building x", optional.MODEL_BUILDER_MODULES)
    assert reason is not None
    assert "needs torch and transformers, which are not installed on this platform (win_arm64 has no torch wheel):" \
        in reason


def test_every_missing_module_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, *optional.GGUF_MODULES)
    reason = optional.missing_reason("converting x", optional.GGUF_MODULES)
    assert reason is not None
    assert_one_line_naming_the_fix(reason, "torch, transformers and gguf")


def test_a_missing_module_is_named_as_pip_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "onnx_ir")
    reason = optional.missing_reason("building x", optional.MODEL_BUILDER_MODULES)
    assert reason is not None
    assert_one_line_naming_the_fix(reason, "onnx-ir")
    assert "win_arm64" not in reason  # not the platform's doing: torch is there


# -- at session start: the steps a build of the plan runs --------------------------------------------------------
@pytest.mark.parametrize(("source", "builder", "step"), [
    (ModelSource(Path("/m/model.gguf"), SourceKind.GGUF, is_default=True), "model-builder",
     "converting the default model (a GGUF) to a Hugging Face folder"),
    (ModelSource(Path("/m/model.gguf"), SourceKind.GGUF), "olive", "converting --model /m/model.gguf (a GGUF)"),
    (ModelSource(Path("/m/hf"), SourceKind.HF_FOLDER), "model-builder",
     "building --model /m/hf with the onnxruntime-genai model builder"),
    (ModelSource(Path("/m/lora"), SourceKind.ADAPTER, base=ModelSource(Path("/m/base"), SourceKind.HF_FOLDER)),
     "olive", "merging the adapter --model /m/lora into its base model"),
    (ModelSource(Path("/m/lora"), SourceKind.ADAPTER, base=ModelSource(Path("/m/b.gguf"), SourceKind.GGUF)),
     "olive", "converting the base model /m/b.gguf (a GGUF)"),
])
def test_a_build_that_needs_torch_stops_the_session_at_start_in_one_line(
        monkeypatch: pytest.MonkeyPatch, source: ModelSource, builder: str, step: str) -> None:
    without(monkeypatch, "torch")
    on_windows_arm(monkeypatch)
    with pytest.raises(MissingPackages) as caught:
        require_build_packages(source, builder, cached=False)
    message = str(caught.value)
    assert message.startswith(step)
    assert_one_line_naming_the_fix(message, "torch")
    assert "on this platform (win_arm64 has no torch wheel)" in message
    assert "or give --model an onnxruntime-genai folder built elsewhere" in message


@pytest.mark.parametrize(("source", "builder", "cached"), [
    (ModelSource(Path("/m/genai"), SourceKind.GENAI_FOLDER), "model-builder", True),  # pre-built: no build
    (ModelSource(Path("/m/foundry"), SourceKind.FOUNDRY_FOLDER), "model-builder", True),
    (ModelSource(Path("/m/hf"), SourceKind.HF_FOLDER), "model-builder", True),  # its build is cached
    (ModelSource(Path("/m/hf"), SourceKind.HF_FOLDER), "olive", False),  # Olive brings its own torch
])
def test_a_run_that_builds_nothing_with_torch_starts_without_it(
        monkeypatch: pytest.MonkeyPatch, source: ModelSource, builder: str, cached: bool) -> None:
    without(monkeypatch, *ALL_STEP_MODULES)
    require_build_packages(source, builder, cached=cached)


def test_the_builders_in_the_harness_environment_are_known_by_their_names() -> None:
    builder = ModelBuilderBuilder()
    assert optional.BUILDERS_IN_HARNESS_ENV[builder.name] == optional.MODEL_BUILDER_MODULES
    assert set(optional.BUILDERS_IN_HARNESS_ENV) == {builder.name}


# -- the real entry points ---------------------------------------------------------------------------------------
def test_the_model_builder_refuses_before_starting_its_child(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    without(monkeypatch, "torch")
    monkeypatch.setattr(builders, "run_logged", no_child)
    with pytest.raises(MissingPackages, match=r"^building .*hf with the onnxruntime-genai model builder needs torch"):
        ModelBuilderBuilder().build(tmp_path / "hf", tmp_path / "out", "int4", "cpu", tmp_path, tmp_path / "log",
                                    lambda message: None)


def test_the_gguf_conversion_child_exits_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    without(monkeypatch, "torch")
    gguf = tmp_path / "model.gguf"
    assert convert.main([str(gguf), str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith(f"harness: converting {gguf} (a GGUF) to a Hugging Face folder needs torch")
    assert_one_line_naming_the_fix(error, "torch")


def test_the_adapter_merge_child_exits_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    without(monkeypatch, "peft")
    assert merge.main([str(tmp_path / "base"), str(tmp_path / "lora"), str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith(f"harness: merging the adapter {tmp_path / 'lora'} into its base model needs peft")


def test_the_reference_says_why_it_is_unavailable_and_the_suites_can_skip_with_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "torch")
    on_windows_arm(monkeypatch)
    reason = reference.reference_unavailable()
    assert reason == ("computing the reference model's answers (the parity and retention suites) needs torch, which "
                      "is not installed on this platform (win_arm64 has no torch wheel): pip install "
                      "'onnx-slm-harness[convert]' where torch ships, or run the parity and retention suites on a "
                      "machine that has it")


def test_the_reference_refuses_before_computing_or_starting_its_child(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    without(monkeypatch, "transformers")
    monkeypatch.setattr(reference, "run_logged", no_child)
    with pytest.raises(MissingPackages, match=r"^computing the reference model's answers .* needs transformers"):
        reference.reference_data(tmp_path, cast(Any, None), reference.EvalSet((), ()), tmp_path, tmp_path,
                                 lambda message: None)


def test_the_reference_child_exits_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    without(monkeypatch, "torch")
    assert reference_child.main([str(tmp_path), str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert_one_line_naming_the_fix(error, "torch")


# -- pyproject.toml: what installs where ---------------------------------------------------------------------
PLATFORMS = {  # the marker variables pip reads on each platform
    "win_amd64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64", "os_name": "nt"},
    "win_arm64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "ARM64", "os_name": "nt"},
    "macos_arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64",
                    "os_name": "posix"},
    "macos_x86_64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "x86_64",
                     "os_name": "posix"},
    "linux_x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                     "os_name": "posix"},
    "linux_aarch64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64",
                      "os_name": "posix"},
}
PYTHONS = {"3.11": "3.11.9", "3.12": "3.12.8"}
CONVERT = {"torch", "transformers", "gguf", "accelerate", "peft", "onnx-ir", "onnxscript"}
ALWAYS = {"pytest", "pytest-benchmark", "hypothesis", "filelock", "psutil", "pyyaml", "regex", "jsonschema", "jinja2",
          "onnx", "onnxruntime", "onnxruntime-genai"}
FOUNDRY_PLATFORMS = {"win_amd64", "win_arm64", "macos_arm64", "linux_x86_64", "linux_aarch64"}  # the SDK's wheels
NO_TORCH_PLATFORMS = {"win_arm64"}
# Imported only by conversion, the merge and the reference (and by the test helpers that make models with them).
EXTRA_MODULES = {"torch", "transformers", "gguf", "peft", "safetensors", "onnx_ir", "onnxscript", "accelerate"}


def project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return cast(dict[str, Any], tomllib.load(handle)["project"])


def environment(platform_name: str, python: str) -> dict[str, str]:
    return {**PLATFORMS[platform_name], "python_version": python, "python_full_version": PYTHONS[python],
            "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def installed_by(requirements: Iterable[str], env: dict[str, str]) -> set[str]:
    """The names of the requirements whose marker holds in ``env`` (no extra requested)."""
    return {canonicalize_name(req.name) for req in map(Requirement, requirements)
            if req.marker is None or req.marker.evaluate({**env, "extra": ""})}


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("platform_name", PLATFORMS)
def test_each_platform_installs_foundry_where_its_sdk_ships_and_torch_where_it_ships(
        platform_name: str, python: str) -> None:
    installed = installed_by(project()["dependencies"], environment(platform_name, python))
    expected = {*ALWAYS,
                *({"foundry-local-sdk"} if platform_name in FOUNDRY_PLATFORMS else set()),
                *(CONVERT if platform_name not in NO_TORCH_PLATFORMS else set())}
    assert installed == expected


def test_the_convert_extra_is_the_conversion_packages_installed_by_default_where_torch_ships() -> None:
    dependencies = [Requirement(text) for text in project()["dependencies"]]
    by_default = {req.name: str(req.specifier) for req in dependencies if req.name in CONVERT}
    extra = {req.name: str(req.specifier) for req in map(Requirement, project()["optional-dependencies"]["convert"])}
    assert extra == by_default  # the same pins
    assert {req.marker for req in dependencies if req.name in CONVERT} == {
        Marker("platform_system != 'Windows' or platform_machine != 'ARM64'")}
    assert all(req.marker is None for req in map(Requirement, project()["optional-dependencies"]["convert"]))


def test_every_module_a_step_needs_comes_with_the_convert_extra() -> None:
    extra = {canonicalize_name(Requirement(text).name) for text in project()["optional-dependencies"]["convert"]}
    needed = {canonicalize_name(optional.DISTRIBUTIONS.get(module, module)) for module in ALL_STEP_MODULES}
    assert needed <= extra


def closure(requirements: Iterable[Requirement], env: dict[str, str]) -> set[str]:
    """The distributions ``requirements`` install in ``env``, through the metadata of those installed here (one not
    installed here, such as pytest's colorama on Windows, ends its branch)."""
    found: set[str] = set()
    pending = [(req, "") for req in requirements]
    while pending:
        req, extra = pending.pop()
        if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if name in found:
            continue
        found.add(name)
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        pending += [(Requirement(text), wanted) for text in requires for wanted in ("", *req.extras)]
    return found


def third_party_imports() -> set[str]:
    """The top-level modules harness/ and the shipped suites import, less the standard library's."""
    pattern = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.MULTILINE)
    files = [*(ROOT / "harness").rglob("*.py"), *(ROOT / "suites").glob("*.py")]
    modules = {name for path in files for name in pattern.findall(path.read_text(encoding="utf-8"))}
    return {name for name in modules if name not in sys.stdlib_module_names and name not in ("harness", "__future__")}


@pytest.mark.parametrize("platform_name", sorted(NO_TORCH_PLATFORMS))
def test_without_the_extra_every_other_module_the_harness_imports_is_installed(platform_name: str) -> None:
    """jinja2 (chat templates) and onnx (graph reads) came only with torch and onnx-ir: without the extra they
    must be dependencies of their own."""
    base = closure(map(Requirement, project()["dependencies"]), environment(platform_name, "3.12"))
    providers = importlib.metadata.packages_distributions()
    unprovided = sorted(module for module in third_party_imports() - EXTRA_MODULES
                        if module in providers and not {canonicalize_name(d) for d in providers[module]} & base)
    assert unprovided == []
    assert not CONVERT & base  # the closure is the torch-less one


# -- a run on a pre-built folder, in an interpreter without the extra ----------------------------------------
WITHOUT_THE_EXTRA = textwrap.dedent("""
    import json, sys
    EXTRA = {"torch", "transformers", "gguf", "peft", "safetensors", "onnx_ir", "onnxscript", "accelerate"}
    for name in EXTRA:
        sys.modules[name] = None  # import -> ImportError, as where they are not installed
    from pathlib import Path
    from harness.builtins import make_builder
    from harness.capacity.memory import Available
    from harness.checks.reference import reference_unavailable
    from harness.session import HarnessSession
    from harness.config.settings import resolve
    from harness.testing.fakes import write_genai_folder

    work = Path(sys.argv[1])
    model = write_genai_folder(work / "model", accuracy_level=4)  # an int4 graph: the twin is derived from it
    settings = resolve({"model": str(model), "cache_dir": str(work / "cache"), "reports_dir": str(work / "reports")},
                       env={}, rootdir=work)
    session = HarnessSession.open(settings, make_builder(settings))
    session.plan_memory(None, Available(8 * 2**30, "a test"))
    session.header_lines()
    deployment = session.deploy(lambda message: None)
    twin = session.twin(lambda message: None)
    print(json.dumps({"deployed": deployment is not None and deployment.document["PromptTemplate"] is not None,
                      "twin": twin is not None, "reference": reference_unavailable()}))
""")


def test_a_session_on_a_prebuilt_folder_runs_without_the_extra(tmp_path: Path) -> None:
    """Opened, planned, laid out for Foundry Local and its fp32-compute twin derived, in an interpreter where torch and
    the rest of the extra cannot be imported; the reference says why it cannot run."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_THE_EXTRA, str(tmp_path)], capture_output=True, text=True,
                          encoding="utf-8", timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["reference"].startswith("computing the reference model's answers (the parity and retention suites) "
                                         "needs torch and transformers, which are not installed")
    assert facts == {"deployed": True, "twin": True, "reference": facts["reference"]}
