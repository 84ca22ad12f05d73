"""Versions and machine facts that shape a build or a measurement, for cache keys and reports."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from functools import cache

# Packages whose version can change the bytes of a built model.
BUILD_PACKAGES = ("onnxruntime-genai", "olive-ai", "transformers", "torch", "onnx", "onnx-ir", "onnxscript", "gguf")
# Packages reported in the header and in run reports.
REPORTED_PACKAGES = ("onnxruntime", "onnxruntime-genai", "olive-ai", "transformers", "torch", "foundry-local-sdk")


@cache
def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions(names: tuple[str, ...]) -> dict[str, str]:
    return {name: package_version(name) for name in names}


def machine_fingerprint() -> dict[str, str]:
    """What makes timings comparable: CPU model, core count, OS and Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
