"""Decode speed of two onnxruntime-genai versions on the same model, in one run, rounds interleaved.

    python benchmarks/engine_versions.py                      # 0.18 (this environment) vs 0.14.1 (Olive's)
    python benchmarks/engine_versions.py --model-dir DIR --other-python PATH

Each round starts a fresh process per engine (each loads the model once, warms up, then times a fixed
64-token greedy answer); the engines alternate who goes first. Prints the median decode tokens/s of each
and their ratio. The model must load in both: by default the default model as Olive builds it (the
0.14.1 builder's output, which the 0.18 engine also runs).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.overhead import bare_decode_rate  # noqa: E402

# One round, run by the other engine's interpreter too (where the harness is not installed): the bare loop of
# benchmarks/overhead.py, by its source.
ROUND = f"""
import json, statistics, sys, time
from typing import Any
{inspect.getsource(bare_decode_rate)}
import onnxruntime_genai as og
model = og.Model(sys.argv[1])
ids = list(og.Tokenizer(model).encode("The history of the printing press " * 8))[:32]
bare_decode_rate(model, ids, 64)  # warm-up
rate = statistics.median(bare_decode_rate(model, ids, 64) for _ in range(3))
print(json.dumps({{"version": og.__version__, "rate": rate}}))
"""


def olive_python() -> Path:
    """The Olive environment's interpreter (it has onnxruntime-genai 0.14.1), created if needed."""
    from harness.config.settings import resolve
    from harness.preparation.olive_env import OliveEnvironment

    settings = resolve({}, env=os.environ, rootdir=ROOT)
    log = Path(tempfile.mkdtemp(prefix="engine-versions-")) / "olive-env.log"
    return OliveEnvironment(settings.cache_dir).interpreter(log, lambda message: print(message, file=sys.stderr))


def olive_model() -> Path:
    """The default model built with Olive (found in the cache, or built)."""
    from harness.builtins import make_builder
    from harness.config.settings import resolve
    from harness.session import HarnessSession

    settings = resolve({"builder": "olive", "reports_dir": tempfile.mkdtemp(prefix="engine-versions-")},
                       env=os.environ, rootdir=ROOT)
    session = HarnessSession.open(settings, make_builder(settings))
    return session.prepare(lambda message: print(f"harness: {message}", file=sys.stderr)).path


def one_round(python: Path | str, model: Path) -> dict[str, object]:
    done = subprocess.run(
        [str(python), "-c", ROUND, str(model)], capture_output=True, text=True, check=True, encoding="utf-8"
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--other-python", type=Path, default=None, help="default: the Olive environment's")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    model = args.model_dir or olive_model()
    engines = [sys.executable, args.other_python or olive_python()]
    rates: dict[str, list[float]] = {}
    for index in range(args.rounds):
        for python in engines if index % 2 == 0 else engines[::-1]:
            result = one_round(python, model)
            rates.setdefault(str(result["version"]), []).append(float(str(result["rate"])))
    medians = {version: statistics.median(values) for version, values in rates.items()}
    for version, median in medians.items():
        print(f"onnxruntime-genai {version}: {median:.1f} decode tokens/s (median of {len(rates[version])} rounds, "
              f"each the median of 3 answers of 64 tokens)")
    (new, new_rate), (old, old_rate) = medians.items()
    print(f"ratio {new} / {old}: {new_rate / old_rate:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
