"""Measure one built model in a fresh process (``harness.preparation.probe_child``), so its load time and peak memory
are its own, and a crash there is a reason here, not a dead session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.errors import RuntimeFailure


def probe(path: Path, ep: str, timeout_s: float = 600) -> dict[str, Any]:
    """Run ``probe_child.measure`` in a child process; a crash there is a RuntimeFailure here, not a dead session."""
    command = [sys.executable, "-m", "harness.preparation.probe_child", str(path), "--ep", ep]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False,
                              encoding="utf-8", errors="replace")
    except subprocess.TimeoutExpired as exc:
        raise RuntimeFailure(f"measuring {path} took over {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeFailure(f"measuring {path} failed (exit {done.returncode}): {tail}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def check_generates(path: Path, ep: str, log: Path, timeout_s: float = 300) -> str | None:
    """Whether a freshly built model runs, checked in a child process (a crash there is a reason here):
    None if it generates, else the runtime's error in one line."""
    command = [sys.executable, "-m", "harness.preparation.probe_child", str(path), "--ep", ep, "--check"]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False,
                              encoding="utf-8", errors="replace")
    except subprocess.TimeoutExpired:
        return f"loading it and generating 2 tokens took over {timeout_s:.0f} s"
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"the check exited with {done.returncode}"
