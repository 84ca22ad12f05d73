"""The CPU model and instruction-set class on macOS and Windows, simulated on this host at run time.

``sys.platform`` and ``platform.machine`` are replaced while the real dispatch runs, and the platform's
sources are replaced by fakes that answer what real machines answered (each fixture names its source):
``sysctl`` for macOS, the registry and ``IsProcessorFeaturePresent`` (and numpy's CPU table) for Windows.
Before this, every such host read ``unknown (...)``, and every Apple silicon chip the same ``arm``.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from harness import provenance

# `sysctl hw.optional` on Apple M1 and M2: the hw.optional lines of `sysctl hw` published side by side in
# "Apple Silicon M2はM1シリーズと比べて命令セットが拡張されている" (Qiita, 2022).
M1_HW_OPTIONAL = """\
hw.optional.arm.FEAT_FlagM: 1
hw.optional.arm.FEAT_FlagM2: 1
hw.optional.arm.FEAT_FHM: 1
hw.optional.arm.FEAT_DotProd: 1
hw.optional.arm.FEAT_SHA3: 1
hw.optional.arm.FEAT_RDM: 1
hw.optional.arm.FEAT_LSE: 1
hw.optional.arm.FEAT_SHA256: 1
hw.optional.arm.FEAT_SHA512: 1
hw.optional.arm.FEAT_SHA1: 1
hw.optional.arm.FEAT_AES: 1
hw.optional.arm.FEAT_PMULL: 1
hw.optional.arm.FEAT_SPECRES: 0
hw.optional.arm.FEAT_SB: 1
hw.optional.arm.FEAT_FRINTTS: 1
hw.optional.arm.FEAT_LRCPC: 1
hw.optional.arm.FEAT_LRCPC2: 1
hw.optional.arm.FEAT_FCMA: 1
hw.optional.arm.FEAT_JSCVT: 1
hw.optional.arm.FEAT_PAuth: 1
hw.optional.arm.FEAT_PAuth2: 0
hw.optional.arm.FEAT_FPAC: 0
hw.optional.arm.FEAT_DPB: 1
hw.optional.arm.FEAT_DPB2: 1
hw.optional.arm.FEAT_BF16: 0
hw.optional.arm.FEAT_I8MM: 0
hw.optional.arm.FEAT_ECV: 1
hw.optional.arm.FEAT_LSE2: 1
hw.optional.arm.FEAT_CSV2: 1
hw.optional.arm.FEAT_CSV3: 1
hw.optional.arm.FEAT_FP16: 1
hw.optional.arm.FEAT_SSBS: 1
hw.optional.arm.FEAT_BTI: 0
hw.optional.floatingpoint: 1
hw.optional.neon: 1
hw.optional.neon_hpfp: 1
hw.optional.neon_fp16: 1
hw.optional.armv8_1_atomics: 1
hw.optional.armv8_2_fhm: 1
hw.optional.armv8_2_sha512: 1
hw.optional.armv8_2_sha3: 1
hw.optional.armv8_3_compnum: 1
hw.optional.watchpoint: 4
hw.optional.breakpoint: 6
hw.optional.armv8_crc32: 1
hw.optional.armv8_gpi: 1
hw.optional.AdvSIMD: 1
hw.optional.AdvSIMD_HPFPCvt: 1
hw.optional.ucnormal_mem: 1
hw.optional.arm64: 1
"""
M2_HW_OPTIONAL = (M1_HW_OPTIONAL.replace("FEAT_PAuth2: 0", "FEAT_PAuth2: 1").replace("FEAT_FPAC: 0", "FEAT_FPAC: 1")
                  .replace("FEAT_BF16: 0", "FEAT_BF16: 1").replace("FEAT_I8MM: 0", "FEAT_I8MM: 1")
                  .replace("FEAT_BTI: 0", "FEAT_BTI: 1"))  # the five lines the article lists as changed
# `sysctl -n machdep.cpu.brand_string` ("Apple M3") and `sysctl hw.optional` on a MacBook Pro (Mac15,3), from
# the "Macos notes for llama.cpp" (danbev's llama.cpp notes).
M3_HW_OPTIONAL = """\
hw.optional.arm.FEAT_FlagM: 1
hw.optional.arm.FEAT_FlagM2: 1
hw.optional.arm.FEAT_FHM: 1
hw.optional.arm.FEAT_DotProd: 1
hw.optional.arm.FEAT_SHA3: 1
hw.optional.arm.FEAT_RDM: 1
hw.optional.arm.FEAT_LSE: 1
hw.optional.arm.FEAT_SHA256: 1
hw.optional.arm.FEAT_SHA512: 1
hw.optional.arm.FEAT_SHA1: 1
hw.optional.arm.FEAT_AES: 1
hw.optional.arm.FEAT_PMULL: 1
hw.optional.arm.FEAT_SPECRES: 0
hw.optional.arm.FEAT_SB: 1
hw.optional.arm.FEAT_FRINTTS: 1
hw.optional.arm.FEAT_LRCPC: 1
hw.optional.arm.FEAT_LRCPC2: 1
hw.optional.arm.FEAT_FCMA: 1
hw.optional.arm.FEAT_JSCVT: 1
hw.optional.arm.FEAT_PAuth: 1
hw.optional.arm.FEAT_PAuth2: 1
hw.optional.arm.FEAT_FPAC: 1
hw.optional.arm.FEAT_DPB: 1
hw.optional.arm.FEAT_DPB2: 1
hw.optional.arm.FEAT_BF16: 1
hw.optional.arm.FEAT_I8MM: 1
hw.optional.arm.FEAT_WFxT: 0
hw.optional.arm.FEAT_RPRES: 1
hw.optional.arm.FEAT_ECV: 1
hw.optional.arm.FEAT_AFP: 1
hw.optional.arm.FEAT_LSE2: 1
hw.optional.arm.FEAT_CSV2: 1
hw.optional.arm.FEAT_CSV3: 1
hw.optional.arm.FEAT_DIT: 1
hw.optional.arm.FEAT_FP16: 1
hw.optional.arm.FEAT_SSBS: 1
hw.optional.arm.FEAT_BTI: 1
hw.optional.arm.FEAT_SME: 0
hw.optional.arm.FEAT_SME2: 0
hw.optional.arm.SME_F32F32: 0
hw.optional.arm.SME_BI32I32: 0
hw.optional.arm.SME_B16F32: 0
hw.optional.arm.SME_F16F32: 0
hw.optional.arm.SME_I8I32: 0
hw.optional.arm.SME_I16I32: 0
hw.optional.arm.FEAT_SME_F64F64: 0
hw.optional.arm.FEAT_SME_I16I64: 0
hw.optional.arm.FP_SyncExceptions: 1
hw.optional.floatingpoint: 1
hw.optional.neon: 1
hw.optional.neon_hpfp: 1
hw.optional.neon_fp16: 1
hw.optional.armv8_1_atomics: 1
hw.optional.armv8_2_fhm: 1
hw.optional.armv8_2_sha512: 1
hw.optional.armv8_2_sha3: 1
hw.optional.armv8_3_compnum: 1
hw.optional.watchpoint: 4
hw.optional.breakpoint: 6
hw.optional.armv8_crc32: 1
hw.optional.armv8_gpi: 1
hw.optional.AdvSIMD: 1
hw.optional.AdvSIMD_HPFPCvt: 1
hw.optional.ucnormal_mem: 1
hw.optional.arm64: 1
"""
# The hw.optional lines of a published `sysctl hw` of a 4-core (8-thread) Intel Mac: AVX2 and FMA, no AVX-512.
INTEL_MAC_HW_OPTIONAL = """\
hw.optional.floatingpoint: 1
hw.optional.mmx: 1
hw.optional.sse: 1
hw.optional.sse2: 1
hw.optional.sse3: 1
hw.optional.supplementalsse3: 1
hw.optional.sse4_1: 1
hw.optional.sse4_2: 1
hw.optional.x86_64: 1
hw.optional.aes: 1
hw.optional.avx1_0: 1
hw.optional.rdrand: 1
hw.optional.f16c: 1
hw.optional.enfstrg: 1
hw.optional.fma: 1
hw.optional.avx2_0: 1
hw.optional.bmi1: 1
hw.optional.bmi2: 1
hw.optional.rtm: 0
hw.optional.hle: 0
hw.optional.adx: 0
hw.optional.mpx: 0
hw.optional.sgx: 0
hw.optional.avx512f: 0
hw.optional.avx512cd: 0
hw.optional.avx512dq: 0
hw.optional.avx512bw: 0
hw.optional.avx512vl: 0
hw.optional.avx512ifma: 0
hw.optional.avx512vbmi: 0
"""
# An Intel Mac of that kind's brand string (Chromium swarming's recorded `sysctl machdep.cpu`, i7-8750H: AVX2,
# FMA, no AVX-512): the brand and the hw.optional lines above come from two published machines of one class.
INTEL_MAC_BRAND = "Intel(R) Core(TM) i7-8750H CPU @ 2.20GHz"
# An AVX-512 Intel Mac, composed from xnu's key names (kern_mib.c hw.optional, cpuid.c leaf-7 tokens), as a
# Cascade Lake Mac Pro reports them: no published capture of one was found.
AVX512_MAC_HW_OPTIONAL = INTEL_MAC_HW_OPTIONAL.replace("avx512f: 0", "avx512f: 1").replace(
    "avx512bw: 0", "avx512bw: 1").replace("avx512vl: 0", "avx512vl: 1").replace("avx512dq: 0", "avx512dq: 1")
AVX512_MAC_LEAF7 = "RDWRFSGS TSC_THREAD_OFFSET BMI1 AVX2 SMEP BMI2 ERMS INVPCID AVX512F AVX512DQ RDSEED ADX SMAP " \
                   "CLFSOPT CLWB IPT AVX512CD AVX512BW AVX512VL AVX512VNNI MDCLEAR IBRS STIBP L1DF SSBD"

# Snapdragon X Elite under Windows: its ProcessorNameString and ID_AA64ISAR1_EL1 (the registry's "CP 4031"), from
# VirtualBox's CPU database entry generated by VBoxCpuReport on win.arm64 (Qualcomm_Snapdragon_X.h); 12 cores.
SNAPDRAGON_NAME = "Snapdragon(R) X Elite - X1E80100 - Qualcomm(R) Oryon(TM) CPU"
SNAPDRAGON_ISAR1 = 0x0010111101211052  # I8MM field (bits 55:52) = 1
# ID_AA64ISAR1_EL1 of an Apple M1 running Windows (lelegard/arm-cpusysregs, collect/applem1-vm-windows): no I8MM.
M1_WINDOWS_ISAR1 = 0x0000011110211202


def sysctl(answers: Mapping[str, str], calls: list[str] | None = None) -> Callable[[Sequence[str]], str]:
    """A `run` that answers sysctl's last argument from ``answers`` and fails as sysctl does for the rest."""
    def run(args: Sequence[str]) -> str:
        if calls is not None:
            calls.append(" ".join(args))
        if args[-1] not in answers:
            raise OSError(f"sysctl: unknown oid '{args[-1]}'")
        return answers[args[-1]]
    return run


def registry(values: Mapping[tuple[str, str], object]) -> Callable[[str, str], object]:
    def read(key: str, name: str) -> object:
        if (key, name) not in values:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return values[(key, name)]
    return read


def windows_arm_registry(name: str, isar1: int, cores: int) -> Callable[[str, str], object]:
    values: dict[tuple[str, str], object] = {(rf"{provenance.CPU_KEY}\0", "ProcessorNameString"): name}
    values |= {(rf"{provenance.CPU_KEY}\{core}", "CP 4031"): isar1 for core in range(cores)}
    return registry(values)


def features_present(ordinals: set[int]) -> Callable[[int], bool]:
    return lambda ordinal: ordinal in ordinals


@pytest.fixture
def fresh_identity() -> Iterator[None]:
    """Each test reads the CPU anew, and leaves no simulated reading cached for the tests after it."""
    provenance.cpu_identity.cache_clear()
    yield
    provenance.cpu_identity.cache_clear()


def simulate(monkeypatch: pytest.MonkeyPatch, system: str, machine: str, **probes: object) -> None:
    monkeypatch.setattr(sys, "platform", system)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(provenance, "_CPUINFO", "/nonexistent/proc/cpuinfo")  # no Linux reading to fall back on
    for name, probe in probes.items():
        monkeypatch.setattr(provenance, name, probe)


def cpu_isa(fingerprint: Mapping[str, str]) -> tuple[str, str, str]:
    return fingerprint["cpu"], fingerprint["isa"], fingerprint["isa_flags"]


@pytest.mark.usefixtures("fresh_identity")
@pytest.mark.parametrize(("brand", "hw_optional", "isa", "isa_flags"), [
    ("Apple M1", M1_HW_OPTIONAL, "arm-dotprod", "asimd asimddp"),
    ("Apple M2", M2_HW_OPTIONAL, "arm-i8mm", "asimd asimddp i8mm"),
    ("Apple M3", M3_HW_OPTIONAL, "arm-i8mm", "asimd asimddp i8mm"),
], ids=["M1", "M2", "M3"])
def test_apple_silicon_reads_its_chip_and_int8_path_from_sysctl(
        monkeypatch: pytest.MonkeyPatch, brand: str, hw_optional: str, isa: str, isa_flags: str) -> None:
    calls: list[str] = []
    run = sysctl({"machdep.cpu.brand_string": brand + "\n", "hw.optional": hw_optional}, calls)
    simulate(monkeypatch, "darwin", "arm64", run_command=run)
    assert cpu_isa(provenance.machine_fingerprint()) == (brand, isa, isa_flags)
    assert calls == ["sysctl -n machdep.cpu.brand_string", "sysctl hw.optional"]  # two sysctl runs, once a session
    provenance.machine_fingerprint()
    assert len(calls) == 2


@pytest.mark.usefixtures("fresh_identity")
def test_an_m1_and_an_m3_are_different_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, both read cpu 'arm' and isa 'unknown (arm64)', so their timings were compared."""
    prints = []
    for brand, hw_optional in (("Apple M1", M1_HW_OPTIONAL), ("Apple M3", M3_HW_OPTIONAL)):
        provenance.cpu_identity.cache_clear()
        simulate(monkeypatch, "darwin", "arm64",
                 run_command=sysctl({"machdep.cpu.brand_string": brand, "hw.optional": hw_optional}))
        prints.append(provenance.machine_fingerprint())
    m1, m3 = prints
    assert m1["cpu"] != m3["cpu"] and m1["isa"] != m3["isa"]


@pytest.mark.usefixtures("fresh_identity")
def test_an_intel_mac_reads_hw_optional_and_names_what_sysctl_cannot_show(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    run = sysctl({"machdep.cpu.brand_string": INTEL_MAC_BRAND, "hw.optional": INTEL_MAC_HW_OPTIONAL}, calls)
    simulate(monkeypatch, "darwin", "x86_64", run_command=run)
    assert cpu_isa(provenance.machine_fingerprint()) == (
        INTEL_MAC_BRAND, "avx2 (amx_int8, amx_tile, avx_vnni unknown)", "avx2 fma")
    assert "sysctl -n machdep.cpu.leaf7_features" not in calls  # only asked when AVX-512 makes VNNI decide


@pytest.mark.usefixtures("fresh_identity")
@pytest.mark.parametrize(("leaf7", "isa", "isa_flags"), [
    (AVX512_MAC_LEAF7, "avx512-vnni (amx_int8, amx_tile unknown)", "avx2 fma avx512f avx512bw avx512vl avx512_vnni"),
    (None, "avx512 (amx_int8, amx_tile, avx512_vnni unknown)", "avx2 fma avx512f avx512bw avx512vl"),
], ids=["leaf7-read", "leaf7-failed"])
def test_an_avx512_intel_mac_reads_vnni_from_the_leaf7_features(
        monkeypatch: pytest.MonkeyPatch, leaf7: str | None, isa: str, isa_flags: str) -> None:
    answers = {"machdep.cpu.brand_string": "Intel(R) Xeon(R) W-3223 CPU @ 3.50GHz",
               "hw.optional": AVX512_MAC_HW_OPTIONAL}
    if leaf7 is not None:
        answers["machdep.cpu.leaf7_features"] = leaf7
    simulate(monkeypatch, "darwin", "x86_64", run_command=sysctl(answers))
    assert cpu_isa(provenance.machine_fingerprint())[1:] == (isa, isa_flags)


# Two windows-2025-runner CPUs: AMD EPYC 7763 (Zen 3: AVX2 and FMA, no AVX-512) and Intel Xeon Platinum 8370C
# (Ice Lake: AVX-512 with VNNI, no AVX-512 BF16); numpy's table as numpy 2 names those features.
EPYC_7763_NUMPY = {"AVX2": True, "FMA3": True, "AVX512F": False, "AVX512BW": False, "AVX512VL": False,
                   "AVX512VNNI": False, "AVX512BF16": False}
XEON_8370C_NUMPY = {"AVX2": True, "FMA3": True, "AVX512F": True, "AVX512BW": True, "AVX512VL": True,
                    "AVX512VNNI": True, "AVX512BF16": False}


@pytest.mark.usefixtures("fresh_identity")
@pytest.mark.parametrize(("name", "ordinals", "table", "isa", "isa_flags"), [
    ("AMD EPYC 7763 64-Core Processor", {40}, EPYC_7763_NUMPY,
     "avx2 (amx_int8, amx_tile, avx_vnni unknown)", "avx2 fma"),
    ("Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz", {40, 41}, XEON_8370C_NUMPY,
     "avx512-vnni (amx_int8, amx_tile unknown)", "avx2 fma avx512f avx512bw avx512vl avx512_vnni"),
], ids=["avx2-host", "avx512-host"])
def test_windows_x86_reads_the_registry_the_os_and_numpy(
        monkeypatch: pytest.MonkeyPatch, name: str, ordinals: set[int], table: dict[str, bool],
        isa: str, isa_flags: str) -> None:
    simulate(monkeypatch, "win32", "AMD64",
             read_registry=registry({(rf"{provenance.CPU_KEY}\0", "ProcessorNameString"): name + "  "}),
             is_processor_feature_present=features_present(ordinals), numpy_simd_features=lambda: table)
    assert cpu_isa(provenance.machine_fingerprint()) == (name, isa, isa_flags)


@pytest.mark.usefixtures("fresh_identity")
def test_windows_x86_without_numpy_names_the_sub_features_it_could_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_numpy() -> dict[str, bool]:
        raise ImportError("No module named 'numpy'")

    simulate(monkeypatch, "win32", "AMD64", read_registry=registry({}),
             is_processor_feature_present=features_present({40, 41}), numpy_simd_features=no_numpy)
    fingerprint = provenance.machine_fingerprint()
    assert fingerprint["isa"] == "baseline (amx_int8, amx_tile, avx512_vnni, avx512bw, avx512vl, avx_vnni, fma unknown)"
    assert fingerprint["isa_flags"] == "avx2 avx512f"


@pytest.mark.usefixtures("fresh_identity")
@pytest.mark.parametrize(("name", "isar1", "cores", "isa", "isa_flags"), [
    (SNAPDRAGON_NAME, SNAPDRAGON_ISAR1, 12, "arm-i8mm", "asimd asimddp i8mm"),
    ("Apple silicon", M1_WINDOWS_ISAR1, 4, "arm-dotprod", "asimd asimddp"),
], ids=["snapdragon-x-elite", "m1-vm"])
def test_windows_arm_reads_int8_matmul_from_the_registry_as_onnxruntime_does(
        monkeypatch: pytest.MonkeyPatch, name: str, isar1: int, cores: int, isa: str, isa_flags: str) -> None:
    """A Windows build older than PF_ARM_V82_I8MM (66) answers FALSE for it: the registry still tells."""
    simulate(monkeypatch, "win32", "ARM64", read_registry=windows_arm_registry(name, isar1, cores),
             is_processor_feature_present=features_present({19, 43}))
    assert cpu_isa(provenance.machine_fingerprint()) == (name, isa, isa_flags)


@pytest.mark.usefixtures("fresh_identity")
def test_windows_arm_without_the_register_says_i8mm_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    simulate(monkeypatch, "win32", "ARM64", read_registry=registry({}),
             is_processor_feature_present=features_present({19, 43}))
    assert provenance.machine_fingerprint()["isa"] == "arm-dotprod (i8mm unknown)"
    provenance.cpu_identity.cache_clear()
    simulate(monkeypatch, "win32", "ARM64", is_processor_feature_present=features_present({19, 43, 66}))
    assert provenance.machine_fingerprint()["isa"] == "arm-i8mm"


@pytest.mark.usefixtures("fresh_identity")
@pytest.mark.parametrize(("system", "machine"), [("darwin", "arm64"), ("win32", "AMD64"), ("win32", "ARM64")])
def test_a_platform_without_its_sources_falls_back_to_the_linux_reading(
        monkeypatch: pytest.MonkeyPatch, system: str, machine: str) -> None:
    """The real probes run under the simulated platform: no macOS sysctl keys, no winreg, no kernel32 here."""
    if sys.platform == system:
        pytest.skip(f"this host is {system}: its real probes find its sources; the fallback from failing ones is "
                    "test_a_failing_sysctl_falls_back_without_raising (macOS) and the Windows tests above")
    monkeypatch.setattr(platform, "processor", lambda: "arm" if machine == "arm64" else "")
    simulate(monkeypatch, system, machine)
    fingerprint = provenance.machine_fingerprint()
    assert cpu_isa(fingerprint) == ("arm" if machine == "arm64" else machine, f"unknown ({machine})", "")


@pytest.mark.usefixtures("fresh_identity")
def test_a_failing_sysctl_falls_back_without_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sysctl(args: Sequence[str]) -> str:
        raise FileNotFoundError(2, "No such file or directory", args[0])

    monkeypatch.setattr(platform, "processor", lambda: "arm")
    simulate(monkeypatch, "darwin", "arm64", run_command=no_sysctl)
    assert cpu_isa(provenance.machine_fingerprint()) == ("arm", "unknown (arm64)", "")


def old_linux_reading() -> tuple[str, frozenset[str]]:
    """The CPU model and flags as the harness read them before macOS and Windows had sources of their own."""
    lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    flags = [line.partition(":")[2] for line in lines if line.partition(":")[0].strip() in ("flags", "Features")]
    return (models[0] if models else platform.processor() or platform.machine(),
            frozenset(flags[0].split()) if flags else frozenset())


@pytest.mark.usefixtures("fresh_identity")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads this Linux host's /proc/cpuinfo")
def test_on_linux_the_fingerprint_is_what_it_was() -> None:
    cpu, flags = old_linux_reading()
    fingerprint = provenance.machine_fingerprint()
    assert fingerprint["cpu"] == cpu
    assert fingerprint["isa"] == provenance.isa_class(flags) and "unknown" not in fingerprint["isa"]
    assert fingerprint["isa_flags"] == " ".join(flag for flag in provenance.ISA_FLAGS if flag in flags)
    assert provenance.cpu_flags() == flags
    assert list(fingerprint) == ["cpu", "isa", "isa_flags", "cores", "system", "python"]


def test_a_class_the_source_could_not_rule_out_is_named_not_claimed() -> None:
    flags = frozenset({"avx2", "fma"})
    assert provenance.isa_class(flags) == "avx2"
    assert provenance.isa_class(flags, frozenset({"avx_vnni"})) == "avx2 (avx_vnni unknown)"
    assert provenance.isa_class(flags | {"avx_vnni"}, frozenset({"avx_vnni"})) == "avx2-vnni"
    assert provenance.isa_class(flags, frozenset({"avx512_vnni"})) == "avx2"  # no AVX-512: VNNI cannot lift it
