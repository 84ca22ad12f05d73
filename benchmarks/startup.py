"""Measure the harness's start-up on the default model: cold (empty cache) and warm (cached).

    python benchmarks/startup.py            # warm only (builds first if the cache is empty)
    python benchmarks/startup.py --cold     # also a cold run in a fresh temporary cache

Prints, for each run, the wall time of the whole `pytest suites/test_generation.py` session, the
time pytest spent before the first test started (from --durations data is too coarse, so a tiny
plugin stamps it), and, warm, the time of the build step itself (open + prepare on a cache hit).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.locations import default_cache_dir

ROOT = Path(__file__).resolve().parents[1]
STAMP_PLUGIN = """
import os, time
def pytest_runtest_setup(item):
    path = os.environ["STARTUP_STAMP"]
    if not os.path.exists(path):
        with open(path, "w") as handle:
            handle.write(repr(time.time()))
"""


def run_session(cache: Path, work: Path) -> tuple[float, float]:
    """(seconds to the first test, seconds for the whole session) of one pytest process."""
    stamp = work / "stamp"
    stamp.unlink(missing_ok=True)
    (work / "startup_stamp.py").write_text(STAMP_PLUGIN, encoding="utf-8")
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cache), "STARTUP_STAMP": str(stamp),
           "PYTHONPATH": f"{work}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.time()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "startup_stamp",
                    f"--harness-reports={work / 'reports'}", "suites/test_generation.py"],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    total = time.time() - started
    return float(stamp.read_text(encoding="utf-8")) - started, total


def build_step(cache: Path, rounds: int = 5) -> list[float]:
    """Seconds for source detection + hashing + plan + cache lookup + prepare, on a cache hit."""
    os.environ["HARNESS_CACHE_DIR"] = str(cache)
    from harness.builtins import make_builder
    from harness.config.settings import resolve
    from harness.session import HarnessSession

    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        settings = resolve({"reports_dir": tempfile.mkdtemp()}, env=os.environ, rootdir=ROOT)
        session = HarnessSession.open(settings, make_builder(settings))
        session.deploy(lambda message: None)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also measure a cold start in a fresh cache")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    default_cache = Path(os.environ.get("HARNESS_CACHE_DIR") or default_cache_dir())
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        if args.cold:
            first, total = run_session(work / "cold-cache", work)
            print(f"cold: first test after {first:.1f} s, session {total:.1f} s")
            default_cache = work / "cold-cache"
        run_session(default_cache, work)  # make sure everything is built and the OS cache is warm
        warm = [run_session(default_cache, work) for _ in range(args.rounds)]
        print(f"warm: first test after {statistics.median(w[0] for w in warm):.2f} s "
              f"(median of {args.rounds}), session {statistics.median(w[1] for w in warm):.2f} s")
        steps = build_step(default_cache)
        print(f"warm build step (open + prepare + deploy, cache hit): median {statistics.median(steps):.3f} s, "
              f"max {max(steps):.3f} s")


if __name__ == "__main__":
    main()
