"""Versions and machine facts that shape a build or a measurement, for cache keys and reports."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from functools import cache

# Packages whose version can change the bytes of a built model.
# (Olive runs in an environment of its own: its versions are part of OliveBuilder.options.)
BUILD_PACKAGES = ("onnxruntime-genai", "transformers", "torch", "onnx", "onnx-ir", "onnxscript", "gguf")
# Packages reported in the header and in run reports.
REPORTED_PACKAGES = ("onnxruntime", "onnxruntime-genai", "transformers", "torch", "foundry-local-sdk",
                     "onnxruntime-genai-core")


@cache
def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions(names: tuple[str, ...]) -> dict[str, str]:
    return {name: package_version(name) for name in names}


# CPU features that decide which kernel onnxruntime's MLAS runs for quantized matrix products, and so
# the logits of a model computing at accuracy_level 4 (see harness.build.compute_paths).
ISA_FLAGS = ("avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
             "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve")


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (x86 ``flags``, Arm ``Features``); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def isa_class(flags: frozenset[str]) -> str:
    """The instruction-set class that selects MLAS's int8 kernels: hosts of one class compute alike."""
    classes = (
        ("amx", {"amx_int8", "amx_tile"}),
        ("avx512-vnni", {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}),
        ("avx512", {"avx512f", "avx512bw", "avx512vl"}),
        ("avx2-vnni", {"avx2", "fma", "avx_vnni"}),
        ("avx2", {"avx2", "fma"}),
        ("arm-i8mm", {"asimd", "i8mm"}),
        ("arm-dotprod", {"asimd", "asimddp"}),
        ("arm-neon", {"asimd"}),
    )
    if not flags:
        return f"unknown ({platform.machine() or 'unknown machine'})"
    return next((name for name, needed in classes if needed <= flags), "baseline")


def machine_fingerprint() -> dict[str, str]:
    """What makes timings and int8-kernel logits comparable: CPU model and instruction-set class, core
    count, OS and Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = cpu_flags()
    return {
        "cpu": cpu,
        "isa": isa_class(flags),
        "isa_flags": " ".join(flag for flag in ISA_FLAGS if flag in flags),
        "cores": str(os.cpu_count()),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
