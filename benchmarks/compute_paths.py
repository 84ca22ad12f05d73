"""The default model's compute paths: how far apart they are, how close its greedy decisions run, which
shipped verdicts hang on a near-tie, and what fp32 compute costs.

    python benchmarks/compute_paths.py                        # this host: both paths, all figures
    python benchmarks/compute_paths.py --emulate EPYC-Milan   # also the model as built on an emulated CPU

``--emulate CPU`` computes the greedy answers of the model as built, and the eval texts' logits of both
paths, once more under ``qemu-x86_64 -cpu CPU`` (Debian's qemu-user; slow: about 1 token/s). TCG emulates
the instruction set exactly, so on an AVX-512 host ``EPYC-Milan`` (AVX2, no AVX-512, no VNNI) reproduces
what an AVX2-only host computes.

Sections: every greedy check of the shipped sets (case files, generation prompts, Foundry prompts) with
its verdict per path and the smallest margin of each answer; the verdict counts; the logit differences
between the paths on the eval texts (max over the vocabulary per position: max, p99, p50) and the change
of the top-2 margin along identical greedy prefixes; decode tokens/s of both paths, interleaved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from harness.checks.cases import default_case_paths, load_cases
from harness.checks.output_format import answer_context, format_problems
from harness.checks.reference import EvalText, load_eval_set
from harness.locations import data_dir
from harness.preparation.compute_paths import TWIN_LEVEL, accuracy_levels, describe_levels
from harness.runtime.genai import GenAIRuntime
from harness.runtime.protocol import Generation, Prompt, SearchOptions

ROOT = Path(__file__).resolve().parents[1]
GENERATION_PROMPTS_MODULE = ROOT / "suites" / "test_generation.py"


@dataclass(frozen=True)
class GreedyCheck:
    id: str
    prompt: Prompt
    options: SearchOptions
    passes: Callable[[Generation], bool]

    @property
    def key(self) -> str:
        return json.dumps([self.prompt, self.options.max_new_tokens], sort_keys=True)


def _generation_prompts() -> dict[str, str]:
    namespace: dict[str, Any] = {}
    exec(compile(GENERATION_PROMPTS_MODULE.read_text(encoding="utf-8"), str(GENERATION_PROMPTS_MODULE), "exec"),
         namespace)
    return dict(namespace["PROMPTS"])


def greedy_checks(runtime: GenAIRuntime) -> list[GreedyCheck]:
    """Every greedy verdict of the shipped suites that reads an answer's content."""
    context = answer_context(runtime)
    checks: list[GreedyCheck] = []
    for case in load_cases(default_case_paths()):
        if not case.greedy:
            continue
        if case.assertions:
            checks.append(GreedyCheck(f"test_case[{case.id}]", case.prompt, case.options,
                                      lambda answer, case=case: case.passes([answer], context)))
        checks.append(GreedyCheck(f"test_output_format[{case.id}]", case.prompt, case.options,
                                  lambda answer, case=case: not format_problems(answer, case.options, context)))
    generation = SearchOptions(max_new_tokens=96)
    for name, text in _generation_prompts().items():
        checks.append(GreedyCheck(f"test_greedy_answer_is_nonempty_and_ends_its_turn[{name}]",
                                  [{"role": "user", "content": text}], generation,
                                  lambda answer: bool(answer.text.strip()) and answer.stop_reason == "eos"))
    foundry = yaml.safe_load((data_dir() / "foundry_prompts.yaml").read_text(encoding="utf-8"))
    for case in foundry:  # Foundry must end its turn; it renders and computes as onnxruntime-genai does
        checks.append(GreedyCheck(f"test_foundry_answers_like_onnxruntime_genai[{case['id']}]", case["messages"],
                                  generation, lambda answer: answer.stop_reason == "eos"))
    return checks


def answer_all(runtime: GenAIRuntime, checks: Sequence[GreedyCheck]) -> dict[str, Generation]:
    answers: dict[str, Generation] = {}
    for check in checks:
        if check.key not in answers:
            answers[check.key] = runtime.generate(check.prompt, check.options)
    return answers


def emulated(cpu: str, folder: Path, what: str, work: Path) -> Path:
    """Run ``--emulated-part`` for ``folder`` in a child process under qemu-user as ``cpu``; the file it wrote."""
    out = work / f"{folder.name}-{what}.{'json' if what == 'answers' else 'npy'}"
    command = ["qemu-x86_64", "-cpu", cpu, sys.executable, __file__, "--emulated-part", what, str(folder), str(out)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    print(f"emulated {cpu}: {what} of {folder.name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return out


def load_answers(path: Path) -> dict[str, Generation]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {key: Generation(**{name: tuple(v) if isinstance(v, list) else v for name, v in value.items()})
            for key, value in raw.items()}


def eval_text_logits(runtime: GenAIRuntime) -> npt.NDArray[np.float32]:
    """Next-token logits at every position of the eval texts, stacked."""
    rows = [runtime.logits(runtime.encode(item.text)) for item in load_eval_set().items if isinstance(item, EvalText)]
    return np.concatenate(rows)


def _margin(answer: Generation) -> str:
    return f"{min(answer.margins):.2f}" if answer.margins else "-"


def verdict_table(checks: Sequence[GreedyCheck], columns: dict[str, dict[str, Generation]]) -> list[str]:
    """One markdown row per check: pass/FAIL per column, the combined verdict of the first two columns."""
    names = list(columns)
    lines = ["| check | " + " | ".join(names) + " | verdict (first two) | smallest margin |",
             "|---|" + "---|" * len(names) + "---|---|"]
    counts: dict[str, dict[str, int]] = {name: {"pass": 0, "FAIL": 0} for name in names}
    combined = {"passed": 0, "failed": 0, "unstable": 0}
    for check in checks:
        results = [check.passes(columns[name][check.key]) for name in names]
        for name, passed in zip(names, results, strict=True):
            counts[name]["pass" if passed else "FAIL"] += 1
        pair = set(results[:2])
        verdict = "passed" if pair == {True} else "failed" if pair == {False} else "unstable"
        combined[verdict] += 1
        margins = " / ".join(_margin(columns[name][check.key]) for name in names)
        lines.append(f"| `{check.id}` | " + " | ".join("pass" if r else "FAIL" for r in results)
                     + f" | {verdict} | {margins} |")
    lines.append("")
    lines += [f"- {name}: {c['pass']} pass, {c['FAIL']} fail" for name, c in counts.items()]
    lines.append(f"- verdict over the two paths: {combined['passed']} passed, {combined['failed']} failed, "
                 f"{combined['unstable']} unstable")
    return lines


def logit_differences(label: str, a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> str:
    """Max |difference| over the vocabulary at each position of the eval texts, as a distribution."""
    values = np.abs(a - b).max(axis=1)
    return (f"logits, {label}, {values.size} positions of the eval texts: max |difference| over the vocabulary "
            f"per position: max {values.max():.3g}, p99 {np.percentile(values, 99):.3g}, "
            f"p50 {np.percentile(values, 50):.3g}")


def margin_changes(a: dict[str, Generation], b: dict[str, Generation]) -> str:
    """How much the top-2 margin moves between two paths at the same decision (identical prefixes only)."""
    changes: list[float] = []
    for key, left in a.items():
        right = b[key]
        for i, (x, y) in enumerate(zip(left.token_ids, right.token_ids, strict=False)):
            if i >= min(len(left.margins), len(right.margins)):
                break
            changes.append(abs(left.margins[i] - right.margins[i]))
            if x != y:
                break
    values = np.asarray(changes)
    margins = np.asarray([m for answer in a.values() for m in answer.margins])
    return (f"top-2 margin change, {values.size} aligned decisions: max {values.max():.3f}, "
            f"p99 {np.percentile(values, 99):.3f}, p50 {np.percentile(values, 50):.3f}; greedy margins as built, "
            f"{margins.size} decisions: p1 {np.percentile(margins, 1):.3f}, p5 {np.percentile(margins, 5):.3f}, "
            f"p50 {np.percentile(margins, 50):.3f}")


def decode_speed(built: GenAIRuntime, twin: GenAIRuntime, pairs: int = 7) -> str:
    prompt = "Write a short story about a lighthouse keeper who finds a message in a bottle."
    options = SearchOptions(max_new_tokens=64, min_new_tokens=64)
    rates: dict[str, list[float]] = {"built": [], "twin": []}
    for runtime in (built, twin):
        runtime.generate(prompt, options)  # warm-up
    for index in range(pairs):
        order = (("built", built), ("twin", twin)) if index % 2 == 0 else (("twin", twin), ("built", built))
        for name, runtime in order:
            answer = runtime.generate(prompt, options)
            rates[name].append((answer.output_tokens - 1) / (answer.total_seconds - answer.ttft))
    ours, theirs = statistics.median(rates["built"]), statistics.median(rates["twin"])
    return (f"decode tokens/s (64 tokens, median of {pairs} interleaved pairs): as built {ours:.1f}, fp32 twin "
            f"{theirs:.1f} ({theirs / ours:.2f} x)")


def emulated_part(what: str, folder: Path, out: Path) -> None:
    """In the emulated child: the answers of every greedy check, or the eval texts' logits."""
    runtime = GenAIRuntime(folder)
    if what == "answers":
        answers = answer_all(runtime, greedy_checks(runtime))
        out.write_text(json.dumps({key: asdict(value) for key, value in answers.items()}), encoding="utf-8")
    else:
        np.save(out, eval_text_logits(runtime))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emulate", metavar="CPU", help="also run under qemu-x86_64 -cpu CPU (slow)")
    parser.add_argument("--emulated-part", nargs=3, metavar=("WHAT", "FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emulated_part:
        what, folder, out = args.emulated_part
        emulated_part(what, Path(folder), Path(out))
        return 0
    from overhead import default_model_dir  # the sibling script (benchmarks/ is on sys.path)

    from harness.preparation.compute_paths import write_variant

    built_dir = default_model_dir()
    print(f"model {built_dir}: {describe_levels(accuracy_levels(built_dir))}")
    with tempfile.TemporaryDirectory() as work:
        twin_dir = Path(work) / "twin"
        twin_dir.mkdir()
        write_variant(built_dir, twin_dir, TWIN_LEVEL)
        built, twin = GenAIRuntime(built_dir), GenAIRuntime(twin_dir)
        checks = greedy_checks(built)
        columns = {"as built": answer_all(built, checks), "fp32 twin": answer_all(twin, checks)}
        here = {"as built": eval_text_logits(built), "fp32 twin": eval_text_logits(twin)}
        if args.emulate:
            answers = emulated(args.emulate, built_dir, "answers", Path(work))
            columns[f"as built, {args.emulate}"] = load_answers(answers)
        print("\n".join(verdict_table(checks, columns)))
        print()
        print(logit_differences("as built vs fp32 twin, this host", here["as built"], here["fp32 twin"]))
        if args.emulate:
            for name, folder in (("as built", built_dir), ("fp32 twin", twin_dir)):
                there = np.load(emulated(args.emulate, folder, "logits", Path(work)))
                print(logit_differences(f"{name}, this host vs {args.emulate}", here[name], there))
        print(margin_changes(columns["as built"], columns["fp32 twin"]))
        if args.emulate:
            print(f"as built, this host vs {args.emulate}: "
                  + margin_changes(columns["as built"], columns[f"as built, {args.emulate}"]))
        print(decode_speed(built, twin))
    return 0


if __name__ == "__main__":
    sys.exit(main())
