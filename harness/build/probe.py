"""Measure one built model in a fresh process, so its load time and peak memory are its own.

``python -m harness.build.probe MODEL_DIR [--ep cpu]`` prints one JSON object. Decode speed is timed
with a fixed output length (min new tokens = max new tokens) so precisions compare fairly.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, RuntimeFailure
from harness.runtime import GenAIRuntime, SearchOptions
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


def probe(path: Path, ep: str, timeout_s: float = 600) -> dict[str, Any]:
    """Run ``measure`` in a child process; a crash there is a RuntimeFailure here, not a dead session."""
    command = [sys.executable, "-m", "harness.build.probe", str(path), "--ep", ep]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False,
                              encoding="utf-8", errors="replace")
    except subprocess.TimeoutExpired as exc:
        raise RuntimeFailure(f"measuring {path} took over {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeFailure(f"measuring {path} failed (exit {done.returncode}): {tail}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def generates(path: Path, ep: str) -> None:
    """Load the model and take two greedy tokens of a raw prompt; raises RuntimeFailure if it cannot."""
    GenAIRuntime(path, ep).generate("Hello", SearchOptions(max_new_tokens=2))


def check_generates(path: Path, ep: str, log: Path, timeout_s: float = 300) -> str | None:
    """Whether a freshly built model runs, checked in a child process (a crash there is a reason here):
    None if it generates, else the runtime's error in one line."""
    command = [sys.executable, "-m", "harness.build.probe", str(path), "--ep", ep, "--check"]
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
