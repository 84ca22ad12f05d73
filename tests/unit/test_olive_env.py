"""The Olive build environment's identity and errors, without creating one (the e2e tests create it)."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys
import types
from pathlib import Path

import pytest

from harness.builtins import make_builder
from harness.config.settings import resolve
from harness.errors import ConfigError
from harness.locations import default_cache_dir
from harness.preparation import olive_env
from harness.preparation.buildlog import diagnose
from harness.preparation.cache import MANIFEST
from harness.preparation.olive_env import (
    BELOW_ENV_FOLDER,
    DEEPEST_TORCH_FILE,
    DEEPEST_TORCH_FOLDER,
    LOCK,
    MAX_ENV_FOLDER,
    OliveEnvironment,
    lock_versions,
    query_versions,
)

# Deeper than MAX_ENV_FOLDER allows once e/<8 hex> is added, on any host's tmp_path.
LONG = "a-cache-folder-deep-enough-to-push-torch-past-max-path"


def test_the_lock_pins_olive_with_the_builder_it_works_with() -> None:
    pins = lock_versions()
    assert pins["olive-ai"] == "0.13.0" and pins["onnxruntime-genai"] == "0.14.1"
    assert pins["torch"] == "2.13.0", "a torch without the CPU build's version pulls a CUDA build"
    assert all(
        "==" in line for line in LOCK.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")
    )


def test_the_managed_environment_is_keyed_by_the_lock(tmp_path: Path) -> None:
    one, other = OliveEnvironment(tmp_path / "a"), OliveEnvironment(tmp_path / "b")
    assert one.key == other.key and one.key.startswith("lock-")  # the cache folder does not change the build
    assert one.describe() == ("olive-ai 0.13.0 with the onnxruntime-genai 0.14.1 model builder, in the harness's "
                              "Olive environment")


def _simulate(monkeypatch: pytest.MonkeyPatch, system: str, machine: str, python: str = "3.11") -> None:
    """Another platform at run time, where olive_env decides: sys.platform and the platform module (and Windows'
    winreg, without LongPathsEnabled as on a default install)."""
    monkeypatch.setattr(sys, "platform", system)
    if system == "win32":
        monkeypatch.setitem(sys.modules, "winreg", _fake_winreg(None))
    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(platform, "python_version_tuple", lambda: (*python.split("."), "0"))
    monkeypatch.setattr(platform, "python_implementation", lambda: "CPython")


@pytest.mark.parametrize(("system", "machine", "python", "tag"), [
    ("linux", "x86_64", "3.11", "linux-x86_64-cpython3.11"),
    ("linux", "aarch64", "3.11", "linux-aarch64-cpython3.11"),
    ("linux", "x86_64", "3.12", "linux-x86_64-cpython3.12"),
    ("win32", "AMD64", "3.12", "win32-amd64-cpython3.12"),
    ("win32", "ARM64", "3.12", "win32-arm64-cpython3.12"),
    ("darwin", "arm64", "3.12", "darwin-arm64-cpython3.12"),
])
def test_the_environment_is_keyed_by_os_architecture_and_python(
        monkeypatch: pytest.MonkeyPatch, system: str, machine: str, python: str, tag: str) -> None:
    cache = Path("C:/c")  # short: under simulated Windows a deep folder (xdist's tmp_path) is refused for MAX_PATH
    _simulate(monkeypatch, "linux", "x86_64", "3.11")
    reference = OliveEnvironment(cache)
    reference_key, reference_folder = reference.key, reference.folder_name
    _simulate(monkeypatch, system, machine, python)
    here = OliveEnvironment(cache)
    assert here.key.endswith(" " + tag) and here.key.startswith("lock-")
    assert len(here.folder_name) == 8 and here.folder == cache / "e" / here.folder_name
    if tag != "linux-x86_64-cpython3.11":  # a shared cache never hands one platform's environment to another
        assert here.key != reference_key and here.folder_name != reference_folder


def test_a_windows_cache_dir_too_deep_for_torch_is_refused_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / LONG
    _simulate(monkeypatch, "win32", "AMD64")
    with pytest.raises(ConfigError) as info:
        OliveEnvironment(cache)
    message = str(info.value)
    assert "\n" not in message and str(cache).replace("/", "\\") in message
    assert "260-character path limit (MAX_PATH)" in message
    assert f"pass a --harness-cache-dir (HARNESS_CACHE_DIR) of at most {MAX_ENV_FOLDER - 11} characters" in message
    assert r"or enable long paths (LongPathsEnabled=1 in HKLM\SYSTEM\CurrentControlSet\Control\FileSystem)" in message
    monkeypatch.setattr(sys, "platform", "linux")
    OliveEnvironment(cache)  # Linux has no such limit


def test_the_session_start_refuses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The builder the plugin and ``harness build`` make first, before any conversion."""
    settings = resolve({"builder": "olive", "cache_dir": str(tmp_path / LONG)}, env={}, rootdir=tmp_path)
    _simulate(monkeypatch, "win32", "AMD64")
    with pytest.raises(ConfigError, match=r"is too long for the Olive build environment.*MAX_PATH"):
        make_builder(settings)


def _fake_winreg(value: int | None) -> types.ModuleType:
    """winreg answering LongPathsEnabled with ``value`` (None: the value is absent, as on a default install)."""
    class Key:
        def __enter__(self) -> Key:
            return self

        def __exit__(self, *_: object) -> None:
            return None

    def query(key: Key, name: str) -> tuple[int, int]:
        if value is None or name != "LongPathsEnabled":
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return value, 4

    def open_key(root: int, path: str) -> Key:
        assert (root, path) == (0x80000002, r"SYSTEM\CurrentControlSet\Control\FileSystem")
        return Key()

    winreg = types.ModuleType("winreg")
    vars(winreg).update(HKEY_LOCAL_MACHINE=0x80000002, OpenKey=open_key, QueryValueEx=query)
    return winreg


@pytest.mark.parametrize(("value", "refused"), [(None, True), (0, True), (1, False)])
def test_windows_long_paths_lift_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: int | None,
                                           refused: bool) -> None:
    _simulate(monkeypatch, "win32", "AMD64")
    monkeypatch.setitem(sys.modules, "winreg", _fake_winreg(value))
    if refused:
        with pytest.raises(ConfigError, match="MAX_PATH"):
            OliveEnvironment(tmp_path / LONG)
    else:
        OliveEnvironment(tmp_path / LONG)


def test_an_environment_already_built_under_a_long_path_is_used(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _simulate(monkeypatch, "win32", "AMD64")
    monkeypatch.setitem(sys.modules, "winreg", _fake_winreg(1))
    built = OliveEnvironment(tmp_path / LONG).folder  # built while long paths were on
    built.mkdir(parents=True)
    (built / MANIFEST).write_text("{}", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "winreg", _fake_winreg(0))
    assert OliveEnvironment(tmp_path / LONG).folder == built


def test_the_default_windows_cache_fits_torch_for_a_20_character_user_name(monkeypatch: pytest.MonkeyPatch) -> None:
    _simulate(monkeypatch, "win32", "AMD64")
    local = "C:\\Users\\" + "u" * 20 + "\\AppData\\Local"
    monkeypatch.setenv("LOCALAPPDATA", local)
    environment = OliveEnvironment(default_cache_dir())  # no ConfigError
    folder = str(environment.folder)
    assert folder.replace("/", "\\") == f"{local}\\onnx-slm-harness\\e\\{environment.folder_name}"
    assert len(folder) <= MAX_ENV_FOLDER
    assert len(folder) + BELOW_ENV_FOLDER + DEEPEST_TORCH_FILE <= 259
    assert len(folder) + BELOW_ENV_FOLDER + DEEPEST_TORCH_FOLDER <= 247


def test_the_max_path_budget_covers_the_installed_torch() -> None:
    """The measured depths hold for the torch this project installs (its local label, e.g. +cpu, aside)."""
    try:
        torch = importlib.metadata.distribution("torch")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("torch is not installed")
    local = len(torch.version) - len(torch.version.partition("+")[0])
    files = [str(file) for file in torch.files or [] if not str(file).startswith("..")]
    assert files, "torch lists no files"
    assert max(map(len, files)) - local <= DEEPEST_TORCH_FILE
    assert max(len(file.rpartition("/")[0]) for file in files) - local <= DEEPEST_TORCH_FOLDER


def test_the_managed_environment_is_built_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In its final folder: a virtual environment records its own path, and a staging folder would be deeper."""
    built_in: list[Path] = []

    def create(folder: Path, log: Path, progress: object) -> None:
        built_in.append(folder)
        olive_env.venv_python(folder).parent.mkdir(parents=True)

    monkeypatch.setattr(olive_env, "create", create)
    environment = OliveEnvironment(tmp_path)
    python = environment.interpreter(tmp_path / "build.log", lambda message: None)
    assert built_in == [environment.folder] and python == olive_env.venv_python(environment.folder)
    manifest = json.loads((environment.folder / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["environment"] == environment.key and manifest["key"] == environment.folder_name
    assert environment.interpreter(tmp_path / "build.log", lambda message: None) == python and len(built_in) == 1


def test_a_given_interpreter_is_keyed_by_its_path_and_versions(tmp_path: Path) -> None:
    python = Path(sys.executable)
    with pytest.raises(ConfigError, match="has no olive-ai installed; install it there"):
        query_versions(python)  # this project's environment has no Olive
    with pytest.raises(ConfigError, match="cannot run"):
        query_versions(tmp_path / "no-such-python")


@pytest.mark.parametrize(("log", "explanation"), [
    ("NotImplementedError: The hf/tiny model is not currently supported.",
     "does not support this model's architecture"),
    ("KeyError: <Precision.INT8: 'int8'>", "use --builder model-builder for int8"),
    ("[INFO] FP16 is not supported on CPU.", "Olive skips fp16 on CPU"),
    ("ModuleNotFoundError: No module named 'olive'", "that Python has no Olive"),
    ("OSError: [Errno 28] No space left on device", "the disk filled up; free disk space where the cache is"),
    ("_pickle.UnpicklingError: Weights only load failed. This file can still be loaded, to do so you have two "
     "options, do those steps only if you trust the source of the checkpoint.",
     "is a pickle that holds more than tensors, and the harness refuses to run code from model files"),
])
def test_build_failures_are_explained(tmp_path: Path, log: str, explanation: str) -> None:
    path = tmp_path / "build.log"
    path.write_text(f"...\n{log}\n", encoding="utf-8")
    assert explanation in (diagnose(path) or "")
