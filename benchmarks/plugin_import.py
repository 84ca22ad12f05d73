"""What the pytest11 entry point costs every pytest run of the environment: importing ``harness.plugin``.

    python benchmarks/plugin_import.py [--runs 15]

Each run is a fresh ``python -X importtime -c "import pytest; import harness.plugin"`` with bytecode cached, as an
installed package has it; the figure is the cumulative import time of ``harness.plugin`` (pytest itself excluded),
median over the runs. Also lists which heavy modules the import pulled in (none is the goal: they load when a run
engages the harness).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

HEAVY = ("numpy", "yaml", "jsonschema", "onnxruntime_genai", "onnxruntime", "psutil", "filelock")
SCRIPT = f"import sys, pytest, harness.plugin; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"


def bytecode_env(pycache: Path) -> dict[str, str]:
    """The environment of an installed package's import: compiled bytecode cached (in ``pycache``, so the source tree
    stays clean) even where the shell sets PYTHONDONTWRITEBYTECODE (this machine kind does: every import compiles its
    source then, 4x the time)."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(pycache)}


def one_run(env: Mapping[str, str] | None = None) -> tuple[float, str, float]:
    """One fresh interpreter: ``harness.plugin``'s cumulative import time (ms), the heavy modules it loaded, and
    pytest's own import time (ms) in the same interpreter, a yardstick of how busy the host was."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", SCRIPT], capture_output=True, text=True,
                          check=True, encoding="utf-8", env=env)

    def cumulative_ms(module: str) -> float:
        line = next(line for line in done.stderr.splitlines() if line.rstrip().endswith(f"| {module}"))
        return int(line.split("|")[1]) / 1000

    return cumulative_ms("harness.plugin"), done.stdout.strip(), cumulative_ms("pytest")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as pycache:
        env = bytecode_env(Path(pycache))
        one_run(env)  # compiles and caches the bytecode
        results = [one_run(env) for _ in range(args.runs)]
    times = [ms for ms, _, _ in results]
    ratios = [ms / pytest_ms for ms, _, pytest_ms in results]
    heavy = results[-1][1] or "none"
    print(f"import harness.plugin: median {statistics.median(times):.1f} ms over {args.runs} runs "
          f"(min {min(times):.1f}, max {max(times):.1f}), {statistics.median(ratios):.2f}x pytest's own import "
          f"(median); heavy modules loaded: {heavy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
