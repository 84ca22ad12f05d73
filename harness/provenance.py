"""Versions and machine facts that shape a build or a measurement, for cache keys and reports.

The CPU's model and instruction-set flags come from each platform's own source, named as Linux names them
(``/proc/cpuinfo`` flags) so one ``ISA_FLAGS`` and one class table serve every host:

- Linux: ``/proc/cpuinfo`` (``model name``; x86 ``flags``, Arm ``Features``).
- macOS: ``sysctl -n machdep.cpu.brand_string`` and ``sysctl hw.optional`` (xnu's ``kern_mib.c`` key names).
  Intel Macs have no ``hw.optional`` key for AVX-512 VNNI: it is read from ``machdep.cpu.leaf7_features``
  (xnu's ``cpuid.c`` token ``AVX512VNNI``), only when AVX-512 is there to need it.
- Windows: ``ProcessorNameString`` in the registry; ``IsProcessorFeaturePresent`` for AVX2, AVX-512F, NEON,
  dot product and SVE. Windows has no such ordinal for FMA or the AVX-512 sub-features, so x86 hosts take
  those from numpy's runtime CPU dispatch table (CPUID and XGETBV, read once when numpy loads); Arm hosts take
  int8 matrix multiply from the ``CP 4031`` registry value (``ID_AA64ISAR1_EL1``, bits 55:52), as onnxruntime
  itself does, or from ordinal 66 where the Windows build knows it.

A flag that decides the instruction-set class but that a platform's source cannot show (AVX-VNNI and AMX on
macOS and Windows, whatever a failed secondary probe would have told) is *unknown*, not absent: the class then
names it (``avx2 (amx_int8, amx_tile, avx_vnni unknown)``), so such a host never passes for one whose class was
read in full. Every probe that fails falls back to the Linux reading, as before (an ``unknown (...)`` class).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
# the logits of a model computing at accuracy_level 4 (see harness.preparation.compute_paths).
ISA_FLAGS = ("avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
             "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve")
# Instruction-set classes, best first: hosts of one class compute alike.
ISA_CLASSES = (
    ("amx", frozenset({"amx_int8", "amx_tile"})),
    ("avx512-vnni", frozenset({"avx512f", "avx512bw", "avx512vl", "avx512_vnni"})),
    ("avx512", frozenset({"avx512f", "avx512bw", "avx512vl"})),
    ("avx2-vnni", frozenset({"avx2", "fma", "avx_vnni"})),
    ("avx2", frozenset({"avx2", "fma"})),
    ("arm-i8mm", frozenset({"asimd", "i8mm"})),
    ("arm-dotprod", frozenset({"asimd", "asimddp"})),
    ("arm-neon", frozenset({"asimd"})),
)

_CPUINFO = "/proc/cpuinfo"
# What a probe raises when its source is not there: no sysctl or registry, a failed command, no kernel32.
PROBE_ERRORS = (OSError, ImportError, AttributeError, subprocess.SubprocessError)

Run = Callable[[Sequence[str]], str]  # runs a command, returns its stdout; raises on failure
ReadRegistry = Callable[[str, str], object]  # (key under HKEY_LOCAL_MACHINE, value name) -> value; OSError
FeaturePresent = Callable[[int], bool]  # IsProcessorFeaturePresent
SimdFeatures = Callable[[], Mapping[str, bool]]  # numpy's {"AVX2": True, ...}

# macOS: hw.optional keys (xnu bsd/kern/kern_mib.c) -> Linux flag names.
SYSCTL_FLAGS = {
    "hw.optional.AdvSIMD": "asimd", "hw.optional.neon": "asimd", "hw.optional.floatingpoint": "fp",
    "hw.optional.arm.FEAT_DotProd": "asimddp", "hw.optional.arm.FEAT_I8MM": "i8mm",
    "hw.optional.arm.FEAT_BF16": "bf16", "hw.optional.arm.FEAT_SME": "sme", "hw.optional.arm.FEAT_SME2": "sme2",
    "hw.optional.avx1_0": "avx", "hw.optional.avx2_0": "avx2", "hw.optional.fma": "fma",
    "hw.optional.avx512f": "avx512f", "hw.optional.avx512cd": "avx512cd", "hw.optional.avx512dq": "avx512dq",
    "hw.optional.avx512bw": "avx512bw", "hw.optional.avx512vl": "avx512vl",
    "hw.optional.avx512ifma": "avx512ifma", "hw.optional.avx512vbmi": "avx512vbmi",
}
LEAF7_FLAGS = {"AVX512VNNI": "avx512_vnni"}  # machdep.cpu.leaf7_features tokens that hw.optional lacks
# Windows: IsProcessorFeaturePresent ordinals (winnt.h PF_*) -> Linux flag names.
PF_X86_FLAGS = {40: "avx2", 41: "avx512f"}  # PF_AVX2_INSTRUCTIONS_AVAILABLE, PF_AVX512F_INSTRUCTIONS_AVAILABLE
PF_ARM_FLAGS = {19: "asimd", 43: "asimddp", 46: "sve", 66: "i8mm", 68: "bf16"}  # NEON, V82_DP, SVE, V82_I8MM, V86_BF16
NUMPY_X86_FLAGS = {"FMA3": "fma", "AVX512BW": "avx512bw", "AVX512VL": "avx512vl", "AVX512VNNI": "avx512_vnni",
                   "AVX512BF16": "avx512_bf16"}  # what Windows has no ordinal for
# Class-deciding x86 flags neither sysctl nor Windows shows (CPUID leaf 7 subleaf 1, AMX).
X86_UNSEEN = frozenset({"avx_vnni", "amx_tile", "amx_int8"})
CPU_KEY = r"HARDWARE\DESCRIPTION\System\CentralProcessor"
ISAR1_VALUE, I8MM_SHIFT = "CP 4031", 52  # ID_AA64ISAR1_EL1 as Windows mirrors it; its I8MM field, bits 55:52


@dataclass(frozen=True)
class Features:
    present: frozenset[str]
    unknown: frozenset[str] = frozenset()  # class-deciding flags this platform's source cannot show


@dataclass(frozen=True)
class CpuIdentity:
    model: str
    features: Features


def run_command(args: Sequence[str]) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, encoding="utf-8", check=True,
                          timeout=10).stdout


def read_registry(key: str, name: str) -> object:
    if sys.platform != "win32":
        raise OSError("the registry exists only on Windows")
    import winreg

    with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key) as handle:
        return winreg.QueryValueEx(handle, name)[0]


def is_processor_feature_present(feature: int) -> bool:
    if sys.platform != "win32":
        raise OSError("IsProcessorFeaturePresent exists only on Windows")
    import ctypes

    return bool(ctypes.windll.kernel32.IsProcessorFeaturePresent(feature))


def numpy_simd_features() -> Mapping[str, bool]:
    """numpy's runtime CPU features (its own CPUID and XGETBV reading); a session loads numpy anyway."""
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            found = getattr(importlib.import_module(module), "__cpu_features__", None)
        except ImportError:
            continue
        if isinstance(found, dict):
            return {str(name): bool(value) for name, value in found.items()}
    raise OSError("numpy reports no CPU features")


def proc_cpuinfo_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (x86 ``flags``, Arm ``Features``); empty elsewhere."""
    try:
        with open(_CPUINFO, encoding="utf-8") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def proc_cpuinfo_model() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open(_CPUINFO, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def sysctl_flags(output: str) -> frozenset[str]:
    """Linux names of the features ``sysctl hw.optional`` reports as 1."""
    flags = set()
    for line in output.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip() == "1" and key.strip() in SYSCTL_FLAGS:
            flags.add(SYSCTL_FLAGS[key.strip()])
    return frozenset(flags)


def darwin_model(run: Run) -> str | None:
    try:
        return run(["sysctl", "-n", "machdep.cpu.brand_string"]).strip() or None
    except PROBE_ERRORS:
        return None


def darwin_features(run: Run) -> Features | None:
    try:
        output = run(["sysctl", "hw.optional"])
    except PROBE_ERRORS:
        return None
    present = sysctl_flags(output)
    if not is_x86(platform.machine()):  # Apple silicon: hw.optional shows every class-deciding feature
        return Features(present)
    if "avx512f" not in present:
        return Features(present, X86_UNSEEN)
    try:
        tokens = run(["sysctl", "-n", "machdep.cpu.leaf7_features"]).split()
    except PROBE_ERRORS:
        return Features(present, X86_UNSEEN | set(LEAF7_FLAGS.values()))
    return Features(present | {flag for token, flag in LEAF7_FLAGS.items() if token in tokens}, X86_UNSEEN)


def windows_model(read: ReadRegistry) -> str | None:
    try:
        name = read(rf"{CPU_KEY}\0", "ProcessorNameString")
    except PROBE_ERRORS:
        return None
    if not isinstance(name, str):
        return None
    return name.strip() or None


def windows_present(feature_present: FeaturePresent, ordinals: Mapping[int, str]) -> frozenset[str] | None:
    try:
        return frozenset(flag for ordinal, flag in ordinals.items() if feature_present(ordinal))
    except PROBE_ERRORS:
        return None


def windows_x86_features(feature_present: FeaturePresent, simd: SimdFeatures) -> Features | None:
    present = windows_present(feature_present, PF_X86_FLAGS)
    if present is None:
        return None
    try:
        table = simd()
    except PROBE_ERRORS:
        table = {}
    present |= {flag for name, flag in NUMPY_X86_FLAGS.items() if table.get(name)}
    unknown = X86_UNSEEN | {flag for name, flag in NUMPY_X86_FLAGS.items() if name not in table}
    return Features(present, unknown)


def registry_i8mm(read: ReadRegistry) -> bool | None:
    """Whether every core's ``ID_AA64ISAR1_EL1`` has int8 matrix multiply; None when no core's value reads."""
    fields = []
    for core in range(256):
        try:
            value = read(rf"{CPU_KEY}\{core}", ISAR1_VALUE)
        except PROBE_ERRORS:
            break
        if not isinstance(value, int):
            break
        fields.append((value >> I8MM_SHIFT) & 0xF)
    return all(fields) if fields else None


def windows_arm_features(feature_present: FeaturePresent, read: ReadRegistry) -> Features | None:
    present = windows_present(feature_present, PF_ARM_FLAGS)
    if present is None:
        return None
    i8mm = registry_i8mm(read)
    if i8mm:
        present |= {"i8mm"}
    unknown = frozenset({"i8mm"}) if i8mm is None and "i8mm" not in present else frozenset()
    return Features(present, unknown)


def is_x86(machine: str) -> bool:
    return machine.lower() in ("amd64", "x86_64", "x64", "i386", "i686", "x86")


def platform_probes() -> tuple[str | None, Features | None]:
    """This platform's own reading of the CPU model and features (None where it has none, or it failed).
    Dispatches on ``sys.platform`` when called, and looks the probes up then, so tests can replace them."""
    if sys.platform == "darwin":
        return darwin_model(run_command), darwin_features(run_command)
    if sys.platform == "win32":
        features = (windows_x86_features(is_processor_feature_present, numpy_simd_features)
                    if is_x86(platform.machine())
                    else windows_arm_features(is_processor_feature_present, read_registry))
        return windows_model(read_registry), features
    return None, None


@cache
def cpu_identity() -> CpuIdentity:
    """This machine's CPU model and features; the Linux reading wherever the platform's own fails."""
    model, features = platform_probes()
    return CpuIdentity(model or proc_cpuinfo_model(), features or Features(proc_cpuinfo_flags()))


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags, in Linux's names on every platform; empty where nothing could be read."""
    return cpu_identity().features.present


def isa_class(flags: frozenset[str], unknown: frozenset[str] = frozenset()) -> str:
    """The instruction-set class that selects MLAS's int8 kernels: hosts of one class compute alike. A better
    class that only ``unknown`` flags could make true is named with them: that host's class is not known."""
    if not flags:
        return f"unknown ({platform.machine() or 'unknown machine'})"
    rank = next((index for index, (_, needed) in enumerate(ISA_CLASSES) if needed <= flags), len(ISA_CLASSES))
    name = ISA_CLASSES[rank][0] if rank < len(ISA_CLASSES) else "baseline"
    unseen = sorted({flag for _, needed in ISA_CLASSES[:rank] if needed <= flags | unknown
                     for flag in needed & unknown - flags})
    return f"{name} ({', '.join(unseen)} unknown)" if unseen else name


def machine_fingerprint() -> dict[str, str]:
    """What makes timings and int8-kernel logits comparable: CPU model and instruction-set class, core
    count, OS and Python."""
    identity = cpu_identity()
    flags = identity.features.present
    return {
        "cpu": identity.model,
        "isa": isa_class(flags, identity.features.unknown),
        "isa_flags": " ".join(flag for flag in ISA_FLAGS if flag in flags),
        "cores": str(os.cpu_count()),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
