"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.builtins import make_builder
from harness.config.settings import resolve
from harness.fsutil import link_or_copy
from harness.session import HarnessSession

ROOT = Path(__file__).resolve().parents[2]


def progress(message: str) -> None:
    """The harness's progress lines, as the plugin prints them."""
    print(f"harness: {message}", flush=True)


def with_context(built: Path, target: Path, context: int) -> Path:
    """A copy of a built model folder (the weights linked) whose genai_config.json states another context length."""
    target.mkdir(parents=True)
    for item in built.iterdir():
        if item.is_file() and item.name != "genai_config.json":
            link_or_copy(item, target / item.name)
    config = json.loads((built / "genai_config.json").read_text(encoding="utf-8"))
    config["model"]["context_length"] = config["search"]["max_length"] = context
    (target / "genai_config.json").write_text(json.dumps(config), encoding="utf-8")
    return target


def open_session(reports: Path) -> HarnessSession:
    """A harness session on the default model with the environment's settings (HARNESS_CACHE_DIR)."""
    settings = resolve({"reports_dir": str(reports)}, env=os.environ, rootdir=ROOT)
    return HarnessSession.open(settings, make_builder(settings))


@dataclass(frozen=True)
class CappedRun:
    returncode: int
    output: str  # stdout and stderr
    cap: str  # how the memory was capped, for messages
    oom_kills: int  # processes the kernel killed for memory in the cap (0 under an address-space limit)


def _memory_cgroup(name: str) -> tuple[Path, str, str] | None:
    """A new memory control group this process may create: (folder, limit file, OOM-events file), v2 or v1."""
    v2, v1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")
    candidates = [(v2 / name, "memory.max", "memory.events")] if (v2 / "cgroup.controllers").is_file() and "memory" in (
        v2 / "cgroup.subtree_control").read_text(encoding="utf-8") else []
    candidates.append((v1 / name, "memory.limit_in_bytes", "memory.oom_control"))
    for folder, limit, events in candidates:
        try:
            folder.mkdir()
        except OSError:
            continue
        if (folder / limit).is_file():
            return folder, limit, events
        folder.rmdir()
    return None


def capped_run(command: list[str], limit: int, env: dict[str, str] | None = None, cwd: Path = ROOT) -> CappedRun:
    """Run ``command`` with at most ``limit`` bytes of memory for it and its children: in a memory control group
    (the kernel OOM-kills inside it past the limit), else under an address-space limit (``prlimit --as``)."""
    group = _memory_cgroup(f"harness-test-{os.getpid()}-{time.monotonic_ns()}")
    if group is None:
        if shutil.which("prlimit") is None:
            pytest.skip("no memory control group can be made here and there is no prlimit: nothing caps a run")
        done = subprocess.run(["prlimit", f"--as={limit}", *command], capture_output=True, text=True, env=env,
                              cwd=cwd, check=False, encoding="utf-8")
        return CappedRun(done.returncode, done.stdout + done.stderr, f"prlimit --as={limit}", 0)
    folder, limit_file, events = group
    try:
        (folder / limit_file).write_text(str(limit), encoding="utf-8")
        enter = f'echo $$ > "{folder / "cgroup.procs"}" && exec "$@"'
        done = subprocess.run(["sh", "-c", enter, "sh", *command], capture_output=True, text=True, env=env, cwd=cwd,
                              check=False, encoding="utf-8")
        kills = sum(int(line.split()[1]) for line in (folder / events).read_text(encoding="utf-8").splitlines()
                    if line.startswith("oom_kill "))
        return CappedRun(done.returncode, done.stdout + done.stderr, f"a memory control group of {limit} bytes", kills)
    finally:
        folder.rmdir()
