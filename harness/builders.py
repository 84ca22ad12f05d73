"""Turn a Hugging Face folder into an onnxruntime-genai model: Olive or the model builder.

Each builder runs as a child process whose full output goes to a log file. Olive exits 0 even
when it pruned its only pass and produced nothing, so success is judged by the output folder, and
a failure is explained from the log (``diagnose``) in one line with the option that avoids it.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.errors import BuildError
from harness.settings import EXECUTION_PROVIDERS

Progress = Callable[[str], None]
PROGRESS_EVERY_S = 10.0


class Builder(Protocol):
    name: str

    def options(self) -> dict[str, str]:
        """Everything besides the source and precision that changes the output (for the cache key)."""
        ...

    def build(self, hf_folder: Path, out: Path, precision: str, ep: str, work: Path, log: Path,
              progress: Progress) -> None:
        """Write a complete onnxruntime-genai model folder into ``out`` or raise BuildError."""
        ...


def run_logged(cmd: list[str], log: Path, cwd: Path, label: str, progress: Progress) -> int:
    """Run ``cmd`` with its output in ``log``, reporting elapsed time every few seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    next_report = PROGRESS_EVERY_S
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(cmd)}\n")
        handle.flush()
        process = subprocess.Popen(cmd, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        try:
            while process.poll() is None:
                time.sleep(0.2)
                elapsed = time.monotonic() - started
                if elapsed >= next_report:
                    progress(f"{label}: still running ({elapsed:.0f} s)")
                    next_report += PROGRESS_EVERY_S
        except BaseException:
            process.kill()
            process.wait()
            raise
    return process.returncode


def log_tail(log: Path, lines: int = 1) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    useful = [line.strip() for line in text.splitlines() if line.strip() and "it/s]" not in line]
    return " | ".join(useful[-lines:])


# (pattern in the log, explanation with the way out), most specific first.
KNOWN_FAILURES: tuple[tuple[str, str], ...] = (
    ("FP16 is not supported on CPU",
     "Olive skips fp16 on CPU and produces no model; use --precision int4 or fp32 on CPU"),
    ("Precision.INT8",
     "int8 is not supported by this Olive / onnxruntime-genai builder pair; use --precision int4 "
     "or fp32"),
    ("argument -p/--precision: invalid choice: 'int8'",
     "this onnxruntime-genai model builder has no int8 (it arrives in 0.15, which Olive 0.13 "
     "cannot run); use --precision int4 or fp32"),
    ("KeyError: 'hf_details'",
     "Olive 0.13 does not work with onnxruntime-genai 0.15; install onnxruntime-genai==0.14.1"),
    ("No module named 'onnxruntime_genai.models.quantized_model'",
     "Olive 0.13 does not work with onnxruntime-genai >= 0.16; install onnxruntime-genai==0.14.1"),
    ("No module named 'onnx_ir'", "the model builder needs onnx-ir: pip install onnx-ir onnxscript"),
    ("No module named 'onnxscript'", "the model builder needs onnxscript: pip install onnxscript"),
    ("Killed", "the build process was killed (out of memory?); free memory or use a smaller model"),
)


def diagnose(log: Path) -> str | None:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for pattern, explanation in KNOWN_FAILURES:
        if pattern in text:
            return explanation
    return None


def fail(what: str, log: Path, returncode: int | None = None) -> BuildError:
    status = f" (exit {returncode})" if returncode else ""
    reason = diagnose(log) or f"last log line: {log_tail(log) or '(empty)'}"
    if returncode is not None and returncode < 0:  # killed: the child wrote nothing about it
        name = signal.Signals(-returncode).name
        reason = f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return BuildError(f"harness: {what} failed{status}: {reason}; full log: {log}", log)


def adopt_output(produced: Path, out: Path) -> bool:
    """Move a builder's output into ``out``; Olive <= 0.9 nested it under ``model/``."""
    for candidate in (produced, produced / "model"):
        if (candidate / "genai_config.json").is_file():
            for item in candidate.iterdir():
                shutil.move(str(item), out / item.name)
            return True
    return False


@dataclass
class OliveBuilder:
    """``olive auto-opt --use_model_builder``, as the deployment guide does, or ``olive run``."""

    workflow: Path | None = None
    name: str = field(default="olive", init=False)

    def options(self) -> dict[str, str]:
        if self.workflow is None:
            return {"command": "auto-opt --use_model_builder"}
        return {"command": "run", "workflow_sha256": hashlib.sha256(self.workflow.read_bytes()).hexdigest()}

    def build(self, hf_folder: Path, out: Path, precision: str, ep: str, work: Path, log: Path,
              progress: Progress) -> None:
        produced = work / "olive-output"
        # Olive logs why it pruned a pass only at INFO level (1); its default is ERROR.
        olive = [sys.executable, "-m", "olive"]
        if self.workflow is None:
            device = "cpu" if ep == "cpu" else "gpu"
            cmd = [*olive, "auto-opt", "--model_name_or_path", str(hf_folder), "--device", device,
                   "--provider", EXECUTION_PROVIDERS[ep], "--use_model_builder",
                   "--precision", precision, "--output_path", str(produced), "--log_level", "1"]
            label = f"olive auto-opt {precision}"
        else:
            cmd = [*olive, "run", "--config", str(self.workflow), "--model_name_or_path",
                   str(hf_folder), "--output_path", str(produced), "--log_level", "1"]
            label = f"olive run {self.workflow.name}"
        code = run_logged(cmd, log, cwd=work, label=label, progress=progress)
        if code != 0 or not adopt_output(produced, out):
            raise fail(label, log, code)


@dataclass
class ModelBuilderBuilder:
    """``python -m onnxruntime_genai.models.builder``; ``extra_options`` are passed through."""

    extra_options: tuple[str, ...] = ()
    name: str = field(default="model-builder", init=False)

    def options(self) -> dict[str, str]:
        return {"extra_options": " ".join(self.extra_options)}

    def build(self, hf_folder: Path, out: Path, precision: str, ep: str, work: Path, log: Path,
              progress: Progress) -> None:
        produced = work / "builder-output"
        cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", str(hf_folder),
               "-o", str(produced), "-p", precision, "-e", ep, "-c", str(work / "builder-cache")]
        if self.extra_options:
            cmd += ["--extra_options", *self.extra_options]
        label = f"model builder {precision}"
        code = run_logged(cmd, log, cwd=work, label=label, progress=progress)
        if code != 0 or not adopt_output(produced, out):
            raise fail(label, log, code)
        _copy_tokenizer_extras(hf_folder, out)


def _copy_tokenizer_extras(hf_folder: Path, out: Path) -> None:
    """The model builder leaves out chat_template.jinja, which templates are derived from."""
    for name in ("chat_template.jinja", "generation_config.json", "config.json"):
        if (hf_folder / name).is_file() and not (out / name).exists():
            shutil.copy2(hf_folder / name, out / name)


def make_builder(name: str, workflow: Path | None) -> Builder:
    if name == "olive":
        return OliveBuilder(workflow)
    return ModelBuilderBuilder()
