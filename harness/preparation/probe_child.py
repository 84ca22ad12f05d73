"""``python -m harness.preparation.probe_child MODEL_DIR [--ep cpu] [--check]``: one built model measured in a fresh
process, printed as one JSON object (``--check``: only load it and generate 2 tokens). Decode speed is timed with a
fixed output length (min new tokens = max new tokens) so precisions compare fairly. Started by
``harness.preparation.probe``."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.runtime.genai import GenAIRuntime
from harness.runtime.protocol import SearchOptions
from harness.system import process_peak_rss_mb

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper who finds a message in a bottle."}]
OUTPUT_TOKENS = 64
ROUNDS = 3  # after one warm-up round


def model_size_mb(path: Path) -> float:
    """Weights and graph on disk (the .onnx files and their external data)."""
    return sum(p.stat().st_size for p in path.iterdir() if ".onnx" in p.name) / 2**20


def measure(path: Path, ep: str, rounds: int = ROUNDS) -> dict[str, Any]:
    started = time.perf_counter()
    runtime = GenAIRuntime(path, ep)
    load_s = time.perf_counter() - started
    options = SearchOptions(max_new_tokens=OUTPUT_TOKENS, min_new_tokens=OUTPUT_TOKENS)
    runs = [runtime.generate(PROMPT, options) for _ in range(rounds + 1)][1:]
    decode = [(run.output_tokens - 1) / (run.total_seconds - run.ttft) for run in runs]
    return {
        "size_mb": round(model_size_mb(path), 1),
        "load_s": round(load_s, 3),
        "ttft_s": round(statistics.median(run.ttft for run in runs), 4),
        "decode_tokens_per_s": round(statistics.median(decode), 1),
        "peak_rss_mb": None if (peak := process_peak_rss_mb()) is None else round(peak, 1),
        "prompt_tokens": runs[0].prompt_tokens,
        "output_tokens": runs[0].output_tokens,
        "rounds": rounds,
    }


def generates(path: Path, ep: str) -> None:
    """Load the model and take two greedy tokens of a raw prompt; raises RuntimeFailure if it cannot."""
    GenAIRuntime(path, ep).generate("Hello", SearchOptions(max_new_tokens=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--ep", default="cpu")
    parser.add_argument("--check", action="store_true", help="only load the model and generate 2 tokens")
    args = parser.parse_args()
    try:
        if args.check:
            generates(args.model, args.ep)
            return 0
        print(json.dumps(measure(args.model, args.ep)))
    except HarnessError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
