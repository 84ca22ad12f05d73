"""The harness's decode tokens/s against a bare onnxruntime-genai loop: one process, one model, one run.

    python benchmarks/overhead.py                  # the default model (built first if the cache is empty)
    python benchmarks/overhead.py --model-dir DIR  # any onnxruntime-genai folder

Rounds alternate harness, bare, harness, bare, ... so both sides see the same machine load; each pair
gives a ratio harness / bare of decode tokens/s (same prompt, same fixed output length, greedy). The
verdict is on the median ratio and its distribution-free 95% interval: **within** 3% (``--tolerance``)
when the median is, **outside** when the whole interval is, and **inconclusive** when the median is
outside but the interval reaches the band: the machine was too noisy to tell (on 2 shared cores a
pair's ratio ranged 0.86 to 1.38 in one run). Exit 0 within, 1 outside, 2 inconclusive.
Decode tokens/s is (output tokens - 1) / (time of the last token - time of the first), on both sides.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checks.ab import median_interval
from harness.checks.bench import RoundMetrics
from harness.runtime.genai import GenAIRuntime
from harness.runtime.protocol import SearchOptions

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.03


@dataclass(frozen=True)
class Overhead:
    harness: list[float]  # decode tokens/s per round
    bare: list[float]
    ratios: list[float]  # harness / bare, per pair

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def seconds_per_token(self) -> float:
        """What the harness adds to each token, from the medians (negative: it measured faster)."""
        return 1 / statistics.median(self.harness) - 1 / statistics.median(self.bare)

    @property
    def interval(self) -> tuple[float, float]:
        """A distribution-free interval of at least 95% for the median ratio (order statistics); below 6 pairs,
        where none reaches 95%, the whole range."""
        return median_interval(self.ratios) or (min(self.ratios), max(self.ratios))

    def verdict(self, tolerance: float = TOLERANCE) -> str:
        """``within``, ``outside`` or ``inconclusive`` (see the module's docstring)."""
        if abs(self.ratio - 1) <= tolerance:
            return "within"
        low, high = self.interval
        return "outside" if high < 1 - tolerance or low > 1 + tolerance else "inconclusive"

    def line(self) -> str:
        low, high = self.interval
        return (f"harness {statistics.median(self.harness):.1f} decode tokens/s, bare loop "
                f"{statistics.median(self.bare):.1f}: median ratio {self.ratio:.4f} over {len(self.ratios)} pairs "
                f"(95% interval {low:.3f} .. {high:.3f}, range {min(self.ratios):.3f} .. {max(self.ratios):.3f}), "
                f"{self.seconds_per_token * 1e6:+.0f} us per token")


def bare_decode_rate(model: Any, prompt_ids: list[int], output_tokens: int) -> float:
    """onnxruntime-genai's own loop, nothing else timed."""
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt_ids) + output_tokens,
                              min_length=len(prompt_ids) + output_tokens, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt_ids)
    first = last = 0.0
    count = 0
    while not generator.is_done():
        generator.generate_next_token()
        generator.get_next_tokens()
        last = time.perf_counter()
        count += 1
        first = first or last
    return (count - 1) / (last - first)


def measure(model_dir: Path, pairs: int = 15, prompt_tokens: int = 32, output_tokens: int = 64,
            runtime: Callable[[Path], GenAIRuntime] = GenAIRuntime) -> Overhead:
    """Interleaved rounds of ``runtime`` (the harness's) and a bare loop on the same loaded model.

    Same ``og.Model`` object on both sides: two instances of one model in one process ran at different
    speeds here (the first loaded up to 9% slower per token, whichever side had it), which would be
    measured as harness overhead.
    """
    harness = runtime(model_dir)
    bare_model = harness._model
    prompt_ids = harness.encode("The history of the printing press " * 64)[:prompt_tokens]
    prompt = harness.decode(prompt_ids)
    prompt_ids = harness.encode(prompt)
    options = SearchOptions(max_new_tokens=output_tokens, min_new_tokens=output_tokens, margins=False)  # as the suite
    harness.generate(prompt, options)  # warm-up, both sides
    bare_decode_rate(bare_model, prompt_ids, output_tokens)
    ours: list[float] = []
    theirs: list[float] = []
    for index in range(pairs):
        for side in ((0, 1) if index % 2 == 0 else (1, 0)):  # alternate who goes first
            if side == 0:
                rate = RoundMetrics.of(harness.generate(prompt, options)).decode_tokens_per_s
                assert rate is not None
                ours.append(rate)
            else:
                theirs.append(bare_decode_rate(bare_model, prompt_ids, output_tokens))
    harness.close()
    return Overhead(ours, theirs, [h / b for h, b in zip(ours, theirs, strict=True)])


def default_model_dir() -> Path:
    """The default model, built (or found in the cache) the way a pytest session does."""
    from harness.builtins import make_builder
    from harness.config.settings import resolve
    from harness.session import HarnessSession

    with tempfile.TemporaryDirectory(prefix="overhead-") as reports:  # the build's log only: the model is cached
        settings = resolve({"reports_dir": reports}, env=os.environ, rootdir=ROOT)
        session = HarnessSession.open(settings, make_builder(settings))
        return session.prepare(lambda message: print(f"harness: {message}", file=sys.stderr)).path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="onnxruntime-genai folder (default: the "
                                                                      "default model, from HARNESS_CACHE_DIR)")
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    args = parser.parse_args()
    result = measure(args.model_dir or default_model_dir(), args.pairs, args.prompt_tokens, args.output_tokens)
    verdict = result.verdict(args.tolerance)
    print(f"{result.line()}; {verdict} {args.tolerance:.0%}")
    return {"within": 0, "outside": 1}.get(verdict, 2)


if __name__ == "__main__":
    sys.exit(main())
