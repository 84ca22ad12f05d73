"""How often a timing verdict is right on this machine: false alarms, detections and inconclusive verdicts.

    python benchmarks/timing_power.py                       # 20 trials per case, quiet then loaded (about 45 min)
    python benchmarks/timing_power.py --trials 5 --load quiet --out power.jsonl
    python benchmarks/timing_power.py --table power.jsonl more.jsonl  # the table of saved trials, merged

Each trial compares the default model (int4, built or found in the cache as a session does) with itself,
unchanged or slowed by 10% or 20% in decode tokens/s (``SlowedRuntime``: a fixed delay after each token, set from
the model's TPOT measured at the start), in two modes, with the benchmark suite's settings (a 32-token prompt, 64
generated tokens, a warm-up round):

- **history**: a baseline run of 5 rounds (the smoke profile's), then a run of 5 rounds of the model under test,
  each round after a machine-yardstick timing, compared by ``harness compare``'s own ``compare_runs``: once on the
  raw timings and once normalized by the yardstick (what the benchmarks record);
- **A/B**: 10 interleaved pairs of the model under test and a second instance of the unchanged model, loaded after
  it, in a random order per pair, the model under test's rounds alternating its copy loaded before the baseline and
  one loaded after it (what ``--harness-ab`` does: ``ABModels``), judged by ``judge_pairs``.

A verdict is the comparison's: regressed when any timing metric regressed, else inconclusive when any was, else
within. ``loaded`` runs it all again beside a noisy neighbour this script starts: a process that burns one of the
cores at a duty cycle drawn anew every 2 s (0 to 100%). Trials of the three slow-downs alternate, so a change in
the machine meets them alike. Prints one table row per mode, load and slow-down; each trial is a JSON line in
``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.overhead import default_model_dir  # noqa: E402
from harness.checks.ab import AB_MIN_PAIRS, interleaved, judge_pairs  # noqa: E402
from harness.checks.bench import ROUNDS_SUFFIX, RoundMetrics, metric_rounds  # noqa: E402
from harness.checks.yardstick import Yardstick  # noqa: E402
from harness.report.compare import Thresholds, compare_runs  # noqa: E402
from harness.report.runs import FORMAT, Run  # noqa: E402
from harness.runtime.genai import GenAIRuntime  # noqa: E402
from harness.runtime.protocol import SearchOptions  # noqa: E402
from harness.testing.faults import SlowedRuntime  # noqa: E402

HISTORY_ROUNDS = 5  # the smoke profile's benchmark rounds
OPTIONS = SearchOptions(max_new_tokens=64, min_new_tokens=64, margins=False)  # the benchmark suite's
SLOW_DOWNS = (0.0, 0.10, 0.20)  # fraction of decode tokens/s lost
NEIGHBOUR = """
import random, time
rng = random.Random(1)
while True:
    duty, until = rng.random(), time.monotonic() + 2.0
    while time.monotonic() < until:
        busy = time.monotonic() + 0.05 * duty
        while time.monotonic() < busy:
            pass
        time.sleep(0.05 * (1 - duty))
"""
KEY = {"model_sha256": "same", "precision": "int4", "accuracy_level": "as built", "ep": "cpu", "machine": "this"}


@contextlib.contextmanager
def neighbour(loaded: bool) -> Iterator[None]:
    """A process burning one core at a varying duty cycle, while the block runs (nothing when not ``loaded``)."""
    if not loaded:
        yield
        return
    process = subprocess.Popen([sys.executable, "-c", NEIGHBOUR])
    try:
        time.sleep(1.0)
        yield
    finally:
        process.kill()
        process.wait()


def bench_run(runtime: GenAIRuntime, yardstick: Yardstick, prompt: str, rounds: int) -> dict[str, Any]:
    """One benchmark check as results.json records it: a warm-up, then ``rounds`` of yardstick and generation."""
    runtime.generate(prompt, OPTIONS)
    yards, generations = [], []
    for _ in range(rounds):
        yards.append(yardstick.seconds())
        generations.append(runtime.generate(prompt, OPTIONS))
    series = {**metric_rounds([RoundMetrics.of(g) for g in generations]), "yardstick_s": yards}
    return {"id": "test_generation_latency[prompt=32]", "outcome": "passed", "series": {
        name + ROUNDS_SUFFIX: values for name, values in series.items()}, "metrics": {
        name: statistics.median(values) for name, values in series.items()}}


def as_run(name: str, test: dict[str, Any], yardstick: bool) -> Run:
    if not yardstick:
        test = {**test, "series": {k: v for k, v in test["series"].items() if not k.startswith("yardstick")}}
    return Run(Path(name), {"format": FORMAT, "schema_version": 2, "run": {"id": name, "started": name}, "key": KEY,
                            "tests": [test]})


@dataclass
class Models:
    current: SlowedRuntime  # the model under test: its delay per token is the slow-down
    baseline: GenAIRuntime  # a second instance of the unchanged model, for A/B
    current_after: SlowedRuntime  # the model under test loaded again after the baseline, as ABModels has it
    yardstick: Yardstick
    prompt: str
    tpot_s: float

    def slow(self, slow_down: float) -> None:
        """Lower decode tokens/s by ``slow_down``: 1 / (tpot + delay) = (1 - slow_down) / tpot."""
        for runtime in (self.current, self.current_after):
            runtime.delay_per_token_s = self.tpot_s * slow_down / (1 - slow_down)


def history_trial(models: Models) -> dict[str, Any]:
    """A baseline run of the unchanged model, then one of the model under test; compared raw and normalized."""
    delay = models.current.delay_per_token_s
    models.current.delay_per_token_s = 0.0
    base = bench_run(models.current, models.yardstick, models.prompt, HISTORY_ROUNDS)
    models.current.delay_per_token_s = delay
    current = bench_run(models.current, models.yardstick, models.prompt, HISTORY_ROUNDS)
    result = {}
    for label, normalized in (("history raw", False), ("history yardstick", True)):
        comparison = compare_runs(as_run("a", base, normalized), as_run("b", current, normalized),
                                  Thresholds(busy=100))
        decode = next(d for d in comparison.deltas if d.metric == "decode_tokens_per_s")
        result[label] = {"verdict": comparison.verdict, "decode_change": round(decode.change, 4)}
    return result


def ab_trial(models: Models, pairs: int = AB_MIN_PAIRS) -> dict[str, Any]:
    """``pairs`` interleaved rounds of the model under test and the baseline, judged on the paired ratios."""
    copies = itertools.cycle((models.current, models.current_after))  # the suite alternates them
    for runtime in (models.current, models.current_after, models.baseline):
        runtime.generate(models.prompt, OPTIONS)
    timed = interleaved(lambda: next(copies).generate(models.prompt, OPTIONS),
                        lambda: models.baseline.generate(models.prompt, OPTIONS), pairs)
    verdicts = judge_pairs(timed, Thresholds().timing)
    worst = verdicts[0].verdict
    decode = next(v for v in verdicts if v.metric == "decode_tokens_per_s")
    return {"ab": {"verdict": {"regression": "regressed"}.get(worst, worst),
                   "decode_change": round(decode.ratio - 1, 4)}}


def open_models(model_dir: Path) -> Models:
    current, baseline = SlowedRuntime(model_dir, 0.0), GenAIRuntime(model_dir)
    current_after = SlowedRuntime(model_dir, 0.0)
    prompt = current.decode(current.encode("The history of the printing press " * 16)[:32])
    for _ in range(3):
        current.generate(prompt, OPTIONS)
    tpot = statistics.median(g.tpot or 0.0 for g in (current.generate(prompt, OPTIONS) for _ in range(7)))
    return Models(current, baseline, current_after, Yardstick(), prompt, tpot)


def table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per mode, load and slow-down: how many trials regressed, were inconclusive, were within; and the spread of
    the unchanged trials' decode change (what normalization removes)."""
    lines = ["| mode | load | slow-down | trials | regressed | inconclusive | within | unchanged: decode change, "
             "min .. max |", "|---|---|---:|---:|---:|---:|---:|---|"]
    cases = sorted({(mode, row["load"], row["slow_down"]) for row in rows for mode in row["verdicts"]})
    for mode, load, slow_down in cases:
        trials = [row["verdicts"][mode] for row in rows if row["load"] == load and row["slow_down"] == slow_down
                  and mode in row["verdicts"]]
        counts = Counter(t["verdict"] for t in trials)
        changes = [t["decode_change"] for t in trials]
        spread = f"{min(changes):+.1%} .. {max(changes):+.1%}" if slow_down == 0 else ""
        lines.append(f"| {mode} | {load} | {slow_down:.0%} | {len(trials)} | {counts['regressed']} | "
                     f"{counts['inconclusive']} | {counts['within']} | {spread} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per mode, load and slow-down")
    parser.add_argument("--load", default="quiet,loaded", help="quiet, loaded or both (comma-separated)")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="append each trial as a JSON line")
    parser.add_argument("--table", type=Path, nargs="+", default=None, metavar="JSONL",
                        help="print the table of trials saved by --out (several runs merge) and run nothing")
    args = parser.parse_args()
    if args.table:
        rows = [json.loads(line) for path in args.table for line in path.read_text(encoding="utf-8").splitlines()]
        print("\n".join(table(rows)))
        return 0
    models = open_models(args.model_dir or default_model_dir())
    delays = [round(models.tpot_s * s / (1 - s) * 1e3, 3) for s in SLOW_DOWNS]
    print(f"TPOT {models.tpot_s * 1e3:.2f} ms: delays {delays} ms per token", flush=True)
    rows: list[dict[str, Any]] = []
    for load in args.load.split(","):
        with neighbour(load == "loaded"):
            for trial in range(args.trials):
                for slow_down in SLOW_DOWNS:
                    models.slow(slow_down)
                    verdicts = {**history_trial(models), **ab_trial(models)}
                    row = {"load": load, "slow_down": slow_down, "trial": trial, "verdicts": verdicts}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if args.out:
                        with args.out.open("a", encoding="utf-8") as handle:
                            handle.write(json.dumps(row) + "\n")
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
