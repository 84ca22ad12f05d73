"""The Olive build environment's identity and errors, without creating one (the e2e tests create it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.build.buildlog import diagnose
from harness.build.olive_env import LOCK, OliveEnvironment, lock_versions, query_versions
from harness.errors import ConfigError


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
