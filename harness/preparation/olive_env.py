"""The Python environment Olive builds in: its own, so the harness can run the deployment engine.

Olive 0.13.0, the newest release, works only with the onnxruntime-genai 0.14 model builder, while the
harness runs onnxruntime-genai 0.18 (the engine Foundry Local deploys on). So Olive runs as a child
process in a virtual environment of its own, created on first use from the lock file shipped with the
harness (``olive-lock.txt``). ``--olive-python PATH`` uses an environment the user already has instead.

The environment is keyed by the lock's hash and by the OS, architecture and Python it was installed for (its wheels
are native), so a cache shared across machines never hands one platform's environment to another. Its folder is
``<cache>/e/<8 hex digits of the key>/``, built in place (a virtual environment records its own path) and kept short
for Windows: torch's deepest file lies 186 characters below it, and Windows limits a path to 260 (MAX_PATH) unless
long paths are enabled.
"""

from __future__ import annotations

import hashlib
import json
import ntpath
import os
import platform
import subprocess
import sys
import venv
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ConfigError
from harness.preparation.buildlog import Progress, fail, run_logged
from harness.preparation.cache import ModelStore

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
# The store's namespace and the key's hash length in the folder's name: short, for MAX_ENV_FOLDER.
ENVS = "e"
FOLDER_HASH_LENGTH = 8
# Windows' MAX_PATH is 260 with the terminating NUL: 259 characters for a file, and 247 for a folder (CreateDirectory
# keeps 12 for an 8.3 name). Measured in torch 2.13.0's win_amd64 wheel: under Lib\site-packages\ its deepest file
# has 167 characters and its deepest folder 156 (license files in torch-2.13.0.dist-info/licenses/third_party/).
BELOW_ENV_FOLDER = len("\\Lib\\site-packages\\")
DEEPEST_TORCH_FILE, DEEPEST_TORCH_FOLDER = 167, 156
MAX_ENV_FOLDER = min(259 - BELOW_ENV_FOLDER - DEEPEST_TORCH_FILE, 247 - BELOW_ENV_FOLDER - DEEPEST_TORCH_FOLDER)
LONG_PATHS_KEY = r"SYSTEM\CurrentControlSet\Control\FileSystem"


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


def platform_tag() -> str:
    """The OS, architecture and Python a virtual environment's native wheels are for, e.g. win32-amd64-cpython3.12."""
    major, minor, _ = platform.python_version_tuple()
    return f"{sys.platform}-{platform.machine().lower()}-{platform.python_implementation().lower()}{major}.{minor}"


def long_paths_enabled() -> bool:
    """Whether Windows lets python.exe (long-path aware since 3.6) exceed MAX_PATH: the LongPathsEnabled policy."""
    if sys.platform != "win32":
        return False
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, LONG_PATHS_KEY) as key:
            value = winreg.QueryValueEx(key, "LongPathsEnabled")[0]
    except OSError:  # no such value: long paths are off
        return False
    return bool(value == 1)


def windows_path_problem(cache_dir: Path, folder: Path) -> str | None:
    """Why pip cannot install torch in ``folder`` on this Windows (None: it can, or this is not Windows)."""
    if sys.platform != "win32" or long_paths_enabled():
        return None
    length = len(ntpath.abspath(folder))
    if length <= MAX_ENV_FOLDER:
        return None
    cache = ntpath.abspath(cache_dir)
    return (f"--harness-cache-dir {cache} is too long for the Olive build environment: its folder "
            f"{ntpath.abspath(folder)} ({length} characters) leaves too little of Windows' 260-character path limit "
            f"(MAX_PATH) for torch's files, up to {BELOW_ENV_FOLDER + DEEPEST_TORCH_FILE} characters deeper; pass a "
            f"--harness-cache-dir (HARNESS_CACHE_DIR) of at most {MAX_ENV_FOLDER - (length - len(cache))} characters, "
            f"e.g. C:\\slm-cache, or enable long paths (LongPathsEnabled=1 in HKLM\\{LONG_PATHS_KEY})")


@dataclass
class OliveEnvironment:
    """Where Olive runs: the managed environment (``python`` None) or the interpreter given."""

    cache_dir: Path
    python: Path | None = None
    _versions: dict[str, str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        """Refuse at the session's start a cache folder too deep for the environment it would create."""
        if self.python is not None:
            return
        problem = windows_path_problem(self.cache_dir, self.folder)
        if problem is not None and ModelStore(self.cache_dir).lookup(ENVS, self.folder_name) is None:
            raise ConfigError(problem)  # an environment already there was built with long paths on

    @property
    def key(self) -> str:
        """Identifies the environment for the cache keys: the lock's hash and the platform, or the given interpreter's
        versions."""
        if self.python is None:
            return f"lock-{hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]} {platform_tag()}"
        return f"python:{self.python} " + " ".join(f"{k}={v}" for k, v in self.versions().items())

    @property
    def folder_name(self) -> str:
        """The managed environment's folder in the cache: a hash of ``key``, short for Windows' MAX_PATH."""
        return hashlib.sha256(self.key.encode("utf-8")).hexdigest()[:FOLDER_HASH_LENGTH]

    @property
    def folder(self) -> Path:
        return ModelStore(self.cache_dir).entry(ENVS, self.folder_name)

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
        folder = store.lookup(ENVS, self.folder_name)
        if folder is None:
            versions = self.versions()
            progress(f"creating the Olive build environment (olive-ai {versions['olive-ai']}, onnxruntime-genai "
                     f"{versions['onnxruntime-genai']}, torch {versions['torch']}) under {self.folder}; "
                     "once per lock file and platform, about a minute (log: " + str(log) + ")")
            result = store.get_or_build(ENVS, self.folder_name, lambda out: create(out, log, progress),
                                        {"environment": self.key, "lock": str(LOCK), "versions": versions},
                                        in_place=True)
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
