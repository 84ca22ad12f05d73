"""The Python environment Olive builds in: its own, so the harness can run the deployment engine.

Olive 0.13.0, the newest release, works only with the onnxruntime-genai 0.14 model builder, while the
harness runs onnxruntime-genai 0.18 (the engine Foundry Local deploys on). So Olive runs as a child
process in a virtual environment of its own, created on first use from the lock file shipped with the
harness (``olive-lock.txt``) under ``<cache>/envs/lock-<lock hash>/``, atomically like every cache
entry. ``--olive-python PATH`` uses an environment the user already has instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import venv
from dataclasses import dataclass, field
from pathlib import Path

from harness.build.buildlog import Progress, fail, run_logged
from harness.build.cache import ModelStore
from harness.errors import ConfigError

LOCK = Path(__file__).with_name("olive-lock.txt")
# What the environment's identity shows (provenance, cache key): the packages that shape a build.
KEY_PACKAGES = ("olive-ai", "onnxruntime-genai", "onnxruntime", "torch", "transformers", "onnx", "onnxscript",
                "onnx-ir")
# Olive's telemetry and the hub stay off: builds are offline.
ENVIRONMENT = {"OLIVE_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
VERSIONS_SCRIPT = ("import importlib.metadata as m, json, sys\n"
                   "def v(n):\n    try:\n        return m.version(n)\n    except m.PackageNotFoundError:\n"
                   "        return 'not installed'\n"
                   "print(json.dumps({n: v(n) for n in sys.argv[1:]}))")


def lock_versions(lock: Path = LOCK) -> dict[str, str]:
    """package -> version, as the lock file pins them."""
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not line.startswith("#"):
            pins[name.lower()] = version
    return pins


def venv_python(folder: Path) -> Path:
    """A virtual environment's interpreter (Windows keeps it under Scripts/)."""
    return folder / "Scripts" / "python.exe" if os.name == "nt" else folder / "bin" / "python"


def environment_variables() -> dict[str, str]:
    return {**os.environ, **ENVIRONMENT}


@dataclass
class OliveEnvironment:
    """Where Olive runs: the managed environment (``python`` None) or the interpreter given."""

    cache_dir: Path
    python: Path | None = None
    _versions: dict[str, str] | None = field(default=None, init=False, repr=False)

    @property
    def key(self) -> str:
        """Identifies the environment for the cache key: the lock's hash, or the given interpreter's versions."""
        if self.python is None:
            return "lock-" + hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
        return f"python:{self.python} " + " ".join(f"{k}={v}" for k, v in self.versions().items())

    def versions(self) -> dict[str, str]:
        """The versions of the packages that shape a build, in this environment."""
        if self._versions is None:
            if self.python is None:
                pins = lock_versions()
                self._versions = {name: pins.get(name, "not installed") for name in KEY_PACKAGES}
            else:
                self._versions = query_versions(self.python)
        return self._versions

    def describe(self) -> str:
        versions = self.versions()
        where = "the harness's Olive environment" if self.python is None else str(self.python)
        return (f"olive-ai {versions['olive-ai']} with the onnxruntime-genai {versions['onnxruntime-genai']} "
                f"model builder, in {where}")

    def interpreter(self, log: Path, progress: Progress) -> Path:
        """The Python to run Olive with, creating the managed environment on first use."""
        if self.python is not None:
            return self.python
        store = ModelStore(self.cache_dir)
        key = self.key
        folder = store.lookup("envs", key)
        if folder is None:
            versions = self.versions()
            progress(f"creating the Olive build environment (olive-ai {versions['olive-ai']}, onnxruntime-genai "
                     f"{versions['onnxruntime-genai']}, torch {versions['torch']}) under {store.entry('envs', key)}; "
                     "once per lock file, about a minute (log: " + str(log) + ")")
            result = store.get_or_build("envs", key, lambda out: create(out, log, progress),
                                        {"lock": str(LOCK), "versions": versions})
            folder = result.path
            if not result.hit:
                progress(f"Olive build environment ready in {result.seconds:.0f} s")
        return venv_python(folder)


def create(folder: Path, log: Path, progress: Progress) -> None:
    """A virtual environment in ``folder`` with exactly the lock's packages; raises BuildError."""
    venv.EnvBuilder(with_pip=True).create(folder)
    python = venv_python(folder)
    install = [str(python), "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "--no-input",
               "-r", str(LOCK)]
    code = run_logged(install, log, cwd=folder, label="installing the Olive build environment", progress=progress)
    if code != 0:
        raise fail("creating the Olive build environment", log, code)
    check = [str(python), "-c", "import olive, onnxruntime_genai, torch, transformers"]
    code = run_logged(check, log, cwd=folder, label="checking the Olive build environment", progress=progress)
    if code != 0:
        raise fail("checking the Olive build environment", log, code)


def query_versions(python: Path) -> dict[str, str]:
    """The key packages' versions in the environment of ``python`` (--olive-python); ConfigError if it cannot run."""
    try:
        done = subprocess.run([str(python), "-c", VERSIONS_SCRIPT, *KEY_PACKAGES], capture_output=True,
                              timeout=120, check=False, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"--olive-python {python} cannot run ({exc.strerror}); give the path of a Python "
                          "interpreter whose environment has olive-ai installed") from exc
    if done.returncode != 0:
        raise ConfigError(f"--olive-python {python} failed to report its packages (exit {done.returncode}); "
                          "give the path of a working Python interpreter")
    versions: dict[str, str] = json.loads(done.stdout)
    if versions["olive-ai"] == "not installed":
        raise ConfigError(f"--olive-python {python} has no olive-ai installed; install it there "
                          f"(pip install -r {LOCK}) or drop --olive-python to use the harness's own environment")
    return versions
