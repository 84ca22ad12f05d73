"""A/A: does the order in which two copies of one model are loaded into one process change their speed?

    python benchmarks/load_order.py [--runs 3] [--pairs 12]

Loads the default model (built or found in the cache as a session does) twice and times the two copies in
alternating pairs (AB, BA, ...) of the benchmark suite's generation (a 32-token prompt, 64 tokens), after two
warm-up generations each; prints the median ratio of decode tokens/s, first-loaded over second-loaded, per run.
Three ways: both copies from one folder; from two folders (a copy in a temporary folder); and both on one thread
(``intra_op_num_threads`` 1 in a copy's genai_config.json: no thread pool). A ratio below 1 means the copy loaded
first is slower, which biases an A/B comparison against the model loaded first (``harness.checks.ab.ABModels``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.overhead import default_model_dir  # noqa: E402
from harness.checks.bench import RoundMetrics  # noqa: E402
from harness.runtime.genai import GenAIRuntime  # noqa: E402
from harness.runtime.protocol import SearchOptions  # noqa: E402

OPTIONS = SearchOptions(max_new_tokens=64, min_new_tokens=64, margins=False)  # the benchmark suite's


def ratio(first: GenAIRuntime, second: GenAIRuntime, pairs: int) -> float:
    """Median over alternating pairs of first-loaded / second-loaded decode tokens/s."""
    prompt = first.decode(first.encode("The history of the printing press " * 16)[:32])
    for runtime in (first, second, first, second):
        runtime.generate(prompt, OPTIONS)
    rates: dict[int, list[float]] = {0: [], 1: []}
    for index in range(pairs):
        for side in ((0, 1) if index % 2 == 0 else (1, 0)):
            rate = RoundMetrics.of((first, second)[side].generate(prompt, OPTIONS)).decode_tokens_per_s
            assert rate is not None
            rates[side].append(rate)
    return statistics.median(a / b for a, b in zip(rates[0], rates[1], strict=True))


def one_thread(folder: Path, into: Path) -> Path:
    shutil.copytree(folder, into)
    config = json.loads((into / "genai_config.json").read_text(encoding="utf-8"))
    config["model"]["decoder"].setdefault("session_options", {})["intra_op_num_threads"] = 1
    (into / "genai_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=12)
    args = parser.parse_args()
    model = default_model_dir()
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(shutil.copytree(model, Path(scratch) / "copy"))
        threaded = one_thread(model, Path(scratch) / "one-thread")
        for label, folders in (("one folder", (model, model)), ("two folders", (model, copy)),
                               ("one thread", (threaded, threaded))):
            ratios = []
            for _ in range(args.runs):
                first = GenAIRuntime(folders[0])
                second = GenAIRuntime(folders[1])
                ratios.append(ratio(first, second, args.pairs))
                first.close()
                second.close()
            print(f"{label}: first-loaded / second-loaded decode tokens/s, median of {args.pairs} pairs: "
                  f"{', '.join(f'{r:.3f}' for r in ratios)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
