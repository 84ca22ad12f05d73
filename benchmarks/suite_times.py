"""Time each shipped suite and show where its time goes (issue 15: measure first).

    python benchmarks/suite_times.py                     # smoke profile, warm cache
    python benchmarks/suite_times.py --profile full      # the full profile
    python benchmarks/suite_times.py --cold              # also a cold run in a fresh temporary cache

Runs ``pytest suites`` in a fresh process with ``benchmarks/suite_profile.py`` loaded, and prints a markdown
table, one row per suite: checks, wall time, and what it went to: model loads, generation (prefill and
decode), other model calls (score, logits), the robustness worker (starts and requests, its generation
included), the fp32 reference, Foundry Local starts, child processes started; "rest" is the wall time none
of those account for (the harness's own work, pytest, Hypothesis, waiting). The first row holds what
happened before the first check (collection, the build or cache lookup, the Foundry folder).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPENT = ("model_load", "generate", "other_model_call", "worker_start", "worker_request", "reference",
         "foundry_start")


def run(profile: str, cache: Path | None, extra: list[str]) -> tuple[float, dict[str, dict[str, float]], int]:
    """(wall seconds of the pytest process, the plugin's totals per suite, pytest's exit code)."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "profile.json"
        env = {**os.environ, "HARNESS_SUITE_PROFILE": str(out),
               "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        if cache is not None:
            env["HARNESS_CACHE_DIR"] = str(cache)
        command = [sys.executable, "-m", "pytest", "suites", f"--harness-profile={profile}", "-q",
                   "-p", "no:cacheprovider", "-p", "benchmarks.suite_profile",
                   f"--harness-reports={Path(work) / 'reports'}", *extra]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, encoding="utf-8")
        wall = time.perf_counter() - started
        if not out.exists():
            sys.exit(f"the session wrote no profile (exit {done.returncode}):\n{done.stdout[-3000:]}"
                     f"{done.stderr[-3000:]}")
        said = [line[line.index("harness: "):] for line in done.stdout.splitlines()
                if "harness: budget" in line or "harness:   " in line]
        print("\n".join([*said, done.stdout.strip().splitlines()[-1]]))  # what a budget cut, and the outcome
        return wall, json.loads(out.read_text(encoding="utf-8")), done.returncode


def _cell(values: dict[str, float], name: str) -> str:
    seconds, count = values.get(f"{name}_s", 0.0), int(values.get(f"{name}_n", 0))
    return f"{seconds:.1f} ({count})" if count else "-"


def table(wall: float, totals: dict[str, dict[str, float]]) -> str:
    lines = ["| suite | checks | wall s | model loads s (n) | generate s (n) | prefill / decode s | other model "
             "calls s (n) | worker starts s (n) | worker requests s (n) | reference s | Foundry starts s (n) | "
             "processes started | rest s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    accounted_wall = 0.0
    for suite, values in totals.items():
        suite_wall = values.get("wall_s", 0.0)
        spent = sum(values.get(f"{name}_s", 0.0) for name in SPENT)
        accounted_wall += suite_wall
        lines.append(f"| {suite} | {int(values.get('checks_n', 0))} | {suite_wall:.1f} | "
                     f"{_cell(values, 'model_load')} | {_cell(values, 'generate')} | "
                     f"{values.get('prefill_s', 0):.1f} / {values.get('decode_s', 0):.1f}"
                     f" | {_cell(values, 'other_model_call')} | {_cell(values, 'worker_start')} | "
                     f"{_cell(values, 'worker_request')} | {values.get('reference_s', 0):.1f} | "
                     f"{_cell(values, 'foundry_start')} | {int(values.get('process_start_n', 0))} | "
                     f"{max(suite_wall - spent, 0):.1f} |")
    lines.append(f"| **session** | | **{wall:.1f}** | | | | | | | | | | {wall - accounted_wall:.1f} outside checks |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke", choices=("smoke", "full"))
    parser.add_argument("--cold", action="store_true", help="also time a run in a fresh, empty cache")
    args, extra = parser.parse_known_args()
    runs: list[tuple[str, Path | None]] = [("warm", None)]
    with tempfile.TemporaryDirectory() as fresh:
        if args.cold:
            runs.insert(0, ("cold", Path(fresh)))
        for label, cache in runs:
            wall, totals, code = run(args.profile, cache, extra)
            print(f"\n### {args.profile}, {label} cache: {wall:.0f} s (pytest exit {code})\n")
            print(table(wall, totals))


if __name__ == "__main__":
    main()
