"""What each phase of a validation costs at the sizes users bring: wall time and the peak RSS of the whole process tree.

    python benchmarks/scale.py models [SHAPE ...] [--context N]    # make seeded random-init models (cached)
    python benchmarks/scale.py measure MODEL [--phases ...] [--reference HF] [--out FILE]
    python benchmarks/scale.py fit FILE                             # the README's table and the fitted costs

``models`` writes ``harness.testing.random_models`` shapes (bf16 safetensors, a real tokenizer and chat
template) under ``<cache>/scale-models/``. ``measure`` runs each phase of one model in a process of its own and
polls the RSS of that process and all its children 20 times a second (anonymous and file-backed apart: the
model builder and transformers memory-map safetensors, whose pages the kernel can drop under pressure):

- ``convert``: a GGUF source to a Hugging Face folder (``python -m harness.preparation.convert``);
- ``merge``: a seeded LoRA adapter (r 16, every linear layer; made before, unmeasured) merged into a Hugging Face
  folder by peft (``python -m harness.preparation.merge``);
- ``build-int4``, ``build-int8``: the harness's model-builder build, with its two-token check;
- ``reference``: the parity suite's fp32 reference (the eval set and the shipped cases' prompts);
- ``load``: loading the built model and answering one prompt;
- ``smoke``: every shipped suite in one session at the smoke profile, in a warm cache, as a user runs them, with a
  row per suite (``smoke:<file>``: its time in the session, and the peak while it ran);
- ``suite:<file>``: a suite alone in a session of its own (not in the default phases).

Each row (JSON lines, appended to ``--out``) names the model's parameter count, context and vocabulary, the host's
CPU and the date. ``fit`` prints per phase the least-squares cost in bytes per parameter and seconds per
parameter-token, and the table the README shows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MB = 1024**2
PHASES = ("convert", "build-int4", "build-int8", "reference", "load", "smoke")  # and "merge", asked for


# -- measuring a process tree ------------------------------------------------------------------------------
class TreePeak:
    """Polls the RSS of a process and its descendants (psutil) and keeps the peaks of their sums."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = self.peak_anonymous = 0
        self.samples: list[tuple[float, int, int]] = []  # (time.time(), RSS, anonymous RSS) of the tree
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        import psutil

        while not self._done.is_set():
            total = anonymous = 0
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                processes = []
            for process in processes:
                try:
                    memory = process.memory_info()
                except psutil.Error:
                    continue
                total += memory.rss
                anonymous += memory.rss - memory.shared
            self.peak, self.peak_anonymous = max(self.peak, total), max(self.peak_anonymous, anonymous)
            self.samples.append((time.time(), total, anonymous))
            self._done.wait(self.interval_s)

    def between(self, first: float, last: float) -> tuple[int, int]:
        """The peaks (RSS, anonymous) of the samples taken from ``first`` to ``last`` (``time.time()``)."""
        inside = [(total, anonymous) for moment, total, anonymous in self.samples if first <= moment <= last]
        return max((t for t, _ in inside), default=0), max((a for _, a in inside), default=0)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def measured(command: Sequence[str], log: Path, env: dict[str, str] | None = None) -> tuple[dict[str, Any], TreePeak]:
    """Run ``command`` (output to ``log``); its wall time, exit code and the peaks of its process tree."""
    started = time.perf_counter()
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        process = subprocess.Popen(list(command), cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env)
        peaks = TreePeak(process.pid)
        code = process.wait()
        peaks.stop()
    return {"wall_s": round(time.perf_counter() - started, 1), "exit": code, "peak_mb": round(peaks.peak / MB),
            "peak_anonymous_mb": round(peaks.peak_anonymous / MB)}, peaks


# -- what a model is ---------------------------------------------------------------------------------------
def describe(model: Path, cache: Path) -> dict[str, Any]:
    """Parameters, context and vocabulary of a source (Hugging Face folder, GGUF or built folder), and the bytes of
    its int4 build and of what a loaded copy keeps resident, once it is built in ``cache``."""
    from harness.builtins import make_builder
    from harness.capacity.model_facts import model_facts
    from harness.capacity.plan import resident_bytes
    from harness.config.settings import resolve
    from harness.preparation.pipeline import cached_path
    from harness.session import HarnessSession

    facts = model_facts(model)
    row = {"model": str(model), "name": model.name, "kind": facts.kind, "parameters": facts.parameters,
           "context": facts.context_length, "vocab": facts.vocab_size, "weight_bytes": facts.weight_bytes}
    settings = resolve({"model": str(model), "cache_dir": str(cache)}, env={}, rootdir=ROOT)
    session = HarnessSession.open(settings, make_builder(settings))
    built = cached_path(session.plan, session.store)
    if built is not None:
        built_facts = model_facts(built)
        row.update(built_bytes=built_facts.weight_bytes,
                   resident_bytes=resident_bytes(built_facts, built_facts.weight_bytes))
    return row


def host() -> dict[str, Any]:
    from harness.provenance import machine_fingerprint

    machine = machine_fingerprint()
    return {"cpu": machine["cpu"], "cores": machine["cores"], "isa": machine["isa"],
            "date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version()}


# -- the phases ------------------------------------------------------------------------------------------
def phase_command(phase: str, model: Path, reference: Path | None, cache: Path, work: Path) -> list[str]:
    python = [sys.executable, str(Path(__file__).resolve())]
    if phase == "merge":  # the adapter measure() made
        (work / "merged").mkdir(exist_ok=True)
        return [sys.executable, "-m", "harness.preparation.merge", str(model), str(work / "adapter"),
                str(work / "merged")]
    if phase == "smoke":  # every shipped suite in one session, as a user runs them
        return [sys.executable, "-m", "pytest", "suites", f"--model={model}", "--harness-profile=smoke", "-q",
                "-p", "no:cacheprovider", "-p", "benchmarks.suite_profile", f"--harness-reports={work / 'reports'}",
                *([f"--reference={reference}"] if reference else [])]
    if phase.startswith("suite:"):
        suite = phase.split(":", 1)[1]
        return [sys.executable, "-m", "pytest", f"suites/{suite}", f"--model={model}", "--harness-profile=smoke",
                "-q", "-p", "no:cacheprovider", f"--harness-reports={work / 'reports'}",
                *([f"--reference={reference}"] if reference else [])]
    return [*python, "_phase", phase, str(model), "--cache", str(cache),
            *(["--reference", str(reference)] if reference else [])]


def run_phase(phase: str, model: Path, reference: Path | None, cache: Path) -> None:
    """One phase, in this process (``measure`` runs it as ``scale.py _phase``)."""
    os.environ["HARNESS_CACHE_DIR"] = str(cache)
    from harness.builtins import make_builder
    from harness.config.settings import resolve
    from harness.preparation.buildlog import Progress
    from harness.session import HarnessSession

    progress: Progress = lambda message: print(f"harness: {message}", flush=True)  # noqa: E731
    precision = phase.removeprefix("build-") if phase.startswith("build-") else "int4"
    with tempfile.TemporaryDirectory() as reports:
        settings = resolve({"model": str(model), "precision": precision, "reports_dir": reports,
                            **({"reference": str(reference)} if reference else {})}, env=os.environ, rootdir=ROOT)
        session = HarnessSession.open(settings, make_builder(settings))
        if phase == "convert":
            session.reference_folder(progress)
        elif phase.startswith("build-"):
            session.prepare(progress)
        elif phase == "load":
            speeds(session.prepare(progress).path, Path(os.environ["HARNESS_SCALE_SPEEDS"]))
        elif phase == "reference":
            from harness.checks.cases import default_case_paths, load_cases
            from harness.checks.reference import EvalPrompt, load_eval_set, reference_data
            from harness.runtime.genai import GenAIRuntime

            runtime = GenAIRuntime(session.prepare(progress).path)
            folder = session.reference_folder(progress)
            assert folder is not None, "no reference: pass --reference"
            cases = [EvalPrompt(f"case-{case.id}", case.prompt) for case in load_cases(default_case_paths())]
            eval_set = load_eval_set().with_prompts(cases)
            precision = session.plan_memory(2048).reference_precision  # as the run would choose it
            print(f"harness: reference precision {precision}", flush=True)
            reference_data(folder, runtime, eval_set, cache, Path(reports), progress, precision)
        else:
            raise SystemExit(f"unknown phase {phase}")


def speeds(built: Path, out: Path) -> None:
    """Load the built model and time it: decode tokens/s (32 tokens, the median of three after a warm-up) and
    prefill tokens/s of a 512-token prompt; written as JSON to ``out``."""
    import statistics

    from harness.checks import lengths
    from harness.runtime.genai import GenAIRuntime
    from harness.runtime.protocol import SearchOptions

    runtime = GenAIRuntime(built)
    runtime.generate("Hello.", SearchOptions(max_new_tokens=4, margins=False))
    fixed = SearchOptions(max_new_tokens=32, min_new_tokens=32, margins=False)
    decode = statistics.median((g.output_tokens - 1) / (g.total_seconds - g.ttft)
                               for g in (runtime.generate("Tell me about the sea.", fixed) for _ in range(3)))
    prompt = lengths.prompt_of_tokens(runtime, lengths.source_ids(runtime, 512), 512)
    prefill = runtime.generate(prompt, SearchOptions(max_new_tokens=1, margins=False)).prefill_seconds
    out.write_text(json.dumps({"decode_tokens_per_s": round(decode, 2),
                               "prefill_tokens_per_s": round(512 / prefill, 1)}), encoding="utf-8")


def measure(model: Path, phases: Sequence[str], reference: Path | None, cache: Path, out: Path) -> None:
    machine = host()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for phase in phases:
            facts = describe(model, cache)  # again each phase: the built model's size, once built
            if (phase == "convert" and facts["kind"] != "gguf") or (phase == "merge" and facts["kind"] != "hf-folder"):
                continue
            if phase == "merge":
                from harness.testing.adapters import make_lora_adapter

                make_lora_adapter(model, work / "adapter", r=16, alpha=32, targets=("all-linear",))
            log = out.with_suffix(".log")
            profile = work / f"{phase}.json"
            env = {**os.environ, "HARNESS_CACHE_DIR": str(cache), "HARNESS_SUITE_PROFILE": str(profile),
                   "HARNESS_SCALE_SPEEDS": str(work / "speeds.json"),
                   "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
            result, peaks = measured(phase_command(phase, model, reference, cache, work), log, env)
            if phase == "load" and (work / "speeds.json").is_file():
                result.update(json.loads((work / "speeds.json").read_text(encoding="utf-8")))
            rows = [{**facts, **machine, "phase": phase, **result}]
            if phase == "smoke" and profile.is_file():  # each suite within the session, as it ran there
                for suite, totals in json.loads(profile.read_text(encoding="utf-8")).items():
                    if "first_t" in totals:
                        peak, anonymous = peaks.between(totals["first_t"], totals["last_t"])
                        rows.append({**facts, **machine, "phase": f"smoke:{suite}", "exit": result["exit"],
                                     "wall_s": round(totals["wall_s"], 1), "peak_mb": round(peak / MB),
                                     "peak_anonymous_mb": round(anonymous / MB)})
            with out.open("a", encoding="utf-8") as handle:
                for row in rows:
                    print(json.dumps(row), flush=True)
                    handle.write(json.dumps(row) + "\n")


# -- random-init models -----------------------------------------------------------------------------------
def default_cache() -> Path:
    from harness.config.settings import SETTINGS_BY_NAME

    return Path(os.environ.get("HARNESS_CACHE_DIR") or SETTINGS_BY_NAME["cache_dir"].default())


def tokenizer_folder(cache: Path, shape: str) -> Path:
    """A real tokenizer for the shape: Qwen2.5's (its GGUF, from the package registry) for qwen2 and llama shapes,
    SmolLM2's (the default model) for phi3, whose own vocabulary (32k) is nearer SmolLM2's (49k)."""
    from harness.preparation.sources import default_model_path
    from tests.e2e.test_builders import qwen_gguf

    gguf = default_model_path() if shape.startswith("phi3") else qwen_gguf(cache)
    target = cache / "scale-models" / f"tokenizer-{gguf.stem}"
    if not (target / "tokenizer.json").is_file():
        from transformers import AutoConfig, AutoTokenizer

        target.mkdir(parents=True, exist_ok=True)
        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(target)
        AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(target)
    return target


def make_models(shapes: Sequence[str], context: int | None, cache: Path) -> list[Path]:
    from harness.testing.random_models import SHAPES, make_random_model

    made = []
    for name in shapes:
        shape = SHAPES[name]
        folder = cache / "scale-models" / f"{name}-ctx{context or shape.context_length}-seed0"
        if not (folder / "config.json").is_file():
            started = time.perf_counter()
            make_random_model(shape, folder, tokenizer_folder(cache, name), context)
            print(f"made {folder} in {time.perf_counter() - started:.0f} s", flush=True)
        made.append(folder)
        print(folder)
    return made


# -- fitting ----------------------------------------------------------------------------------------------
def fit(rows: list[dict[str, Any]]) -> str:
    """Per phase: the least-squares line of its peak and its wall time in the model's size (parameters for the
    conversion, builds and reference; the stored weights' bytes for an adapter's merge; the built model's resident
    bytes for loading and the suites), then every row."""
    import numpy as np

    lines = ["| phase | models | peak GB = a + b x size | anonymous GB = a + b x size | wall s = c + d x size | size |",
             "|---|---:|---|---|---|---|"]
    for phase in dict.fromkeys(row["phase"] for row in rows):
        by_parameters = phase in ("convert", "reference") or phase.startswith("build")
        key = "weight_bytes" if phase == "merge" else "parameters" if by_parameters else "resident_bytes"
        chosen = [row for row in rows if row["phase"] == phase and row.get(key) and row["peak_mb"] > 0]
        sizes = np.array([row[key] for row in chosen], dtype=float)
        if len(set(sizes)) < 2:
            continue
        design = np.stack([np.ones_like(sizes), sizes], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, np.array([row["peak_mb"] * MB for row in chosen]), rcond=None)
        (e, f), *_ = np.linalg.lstsq(design, np.array([row["peak_anonymous_mb"] * MB for row in chosen]), rcond=None)
        (c, d), *_ = np.linalg.lstsq(design, np.array([row["wall_s"] for row in chosen]), rcond=None)
        unit = "bytes a parameter" if by_parameters else "bytes a stored byte" if phase == "merge" else \
            "bytes a resident byte"
        per = "s per B parameters" if by_parameters else "s per GB stored" if phase == "merge" else "s per GB resident"
        lines.append(f"| {phase} | {len(chosen)} | {a / 1e9:.2f} GB + {b:.2f} {unit} | {e / 1e9:.2f} GB + {f:.2f} "
                     f"{unit} | {c:.0f} s + {d * 1e9:.0f} {per} | {key} |")
    lines += ["", "| model | params | context | phase | wall s | peak GiB | anonymous GiB |",
              "|---|---:|---:|---|---:|---:|---:|"]
    for row in rows:
        status = "" if row["exit"] == 0 else f" (exit {row['exit']})"
        lines.append(f"| {row['name']} | {row['parameters'] / 1e9:.2f} B | {row['context']} | {row['phase']}{status} | "
                     f"{row['wall_s']:.0f} | {row['peak_mb'] / 1024:.2f} | {row['peak_anonymous_mb'] / 1024:.2f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    models = commands.add_parser("models", help="make the random-init models")
    models.add_argument("shapes", nargs="*", default=["qwen2.5-0.5b", "qwen2.5-1.5b", "phi3.5-mini"])
    models.add_argument("--context", type=int, default=None)
    run = commands.add_parser("measure", help="measure each phase of one model")
    run.add_argument("model", type=Path)
    run.add_argument("--phases", nargs="+", default=list(PHASES))
    run.add_argument("--reference", type=Path, default=None)
    run.add_argument("--out", type=Path, default=ROOT / "reports" / "scale.jsonl")
    fitted = commands.add_parser("fit", help="fit the costs and print the table")
    fitted.add_argument("file", type=Path)
    phase = commands.add_parser("_phase")
    phase.add_argument("phase")
    phase.add_argument("model", type=Path)
    phase.add_argument("--cache", type=Path, required=True)
    phase.add_argument("--reference", type=Path, default=None)
    args = parser.parse_args(argv)
    cache = default_cache()
    if args.command == "models":
        make_models(args.shapes, args.context, cache)
    elif args.command == "measure":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        measure(args.model.resolve(), args.phases, args.reference, cache, args.out)
    elif args.command == "fit":
        rows = [json.loads(line) for line in args.file.read_text(encoding="utf-8").splitlines() if line.strip()]
        sizes = {model: describe(Path(model), cache) for model in {row["model"] for row in rows}}
        print(fit([{**sizes[row["model"]], **row} for row in rows]))
    else:
        run_phase(args.phase, args.model, args.reference, args.cache)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
