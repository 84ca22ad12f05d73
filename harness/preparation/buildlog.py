"""Child processes whose output goes to a log file, and one-line explanations of their failures.

Builders, the GGUF conversion, the reference computation and the Olive environment all run this way:
the full output is kept for the user, the session prints progress every few seconds, and a failure
becomes a ``BuildError`` that names the cause (from ``KNOWN_FAILURES``) and the log.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from harness.errors import BuildError
from harness.system import exit_cause

Progress = Callable[[str], None]
PROGRESS_EVERY_S = 10.0


def run_logged(cmd: list[str], log: Path, cwd: Path, label: str, progress: Progress,
               env: Mapping[str, str] | None = None) -> int:
    """Run ``cmd`` with its output in ``log``, reporting elapsed time every few seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    next_report = PROGRESS_EVERY_S
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(cmd)}\n")
        handle.flush()
        process = subprocess.Popen(cmd, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
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
    ("No space left on device",
     "the disk filled up; free disk space where the cache is, or point --harness-cache-dir (HARNESS_CACHE_DIR) "
     "to a larger disk"),
    ("FP16 is not supported on CPU",
     "Olive skips fp16 on CPU and produces no model; use --precision int4 or fp32 on CPU, or --builder "
     "model-builder for int8"),
    ("Precision.INT8",
     "Olive 0.13 cannot build int8 (its onnxruntime-genai 0.14 builder has none); use --builder model-builder "
     "for int8, or --precision int4 or fp32"),
    ("argument -p/--precision: invalid choice: 'int8'",
     "this onnxruntime-genai model builder has no int8 (it arrives in 0.15); use --precision int4 or fp32"),
    ("is not currently supported.",
     "the onnxruntime-genai model builder does not support this model's architecture (config.json "
     "'architectures'); build the ONNX model another way and pass its folder with --model"),
    ("KeyError: 'hf_details'",
     "Olive 0.13 does not work with onnxruntime-genai 0.15; give --olive-python an environment with "
     "onnxruntime-genai==0.14.1, or drop --olive-python to use the harness's own"),
    ("No module named 'onnxruntime_genai.models.quantized_model'",
     "Olive 0.13 does not work with onnxruntime-genai >= 0.16; give --olive-python an environment with "
     "onnxruntime-genai==0.14.1, or drop --olive-python to use the harness's own"),
    ("No module named 'onnx_ir'", "the model builder needs onnx-ir: pip install onnx-ir onnxscript"),
    ("No module named 'onnxscript'", "the model builder needs onnxscript: pip install onnxscript"),
    ("No module named 'olive'", "that Python has no Olive: install olive-ai there, or drop --olive-python"),
    ("Weights only load failed",
     "the model's pytorch_model*.bin is a pickle that holds more than tensors, and the harness refuses to run "
     "code from model files; where you trust the model, convert its weights to safetensors (from_pretrained, then "
     "save_pretrained(folder, safe_serialization=True)) and pass that folder"),
    ("size mismatch for base_model.model.",
     "the adapter's weights do not fit the base model's shapes (peft: size mismatch): it was fine-tuned from another "
     "model; pass that one with --base-model"),
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
    cause = exit_cause(returncode or 0)
    if cause.kind == "signal":  # killed: the child wrote nothing about it
        reason = f"killed by {cause.text}" + (" (out of memory?)" if cause.text == "SIGKILL" else "")
    elif cause.kind == "crash":  # a native crash on Windows: the log may say what led to it
        reason = f"crashed: {cause.text}; {reason}"
    return BuildError(f"{what} failed{status}: {reason}; full log: {log}", log)


