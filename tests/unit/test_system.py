"""The platform seams (``harness.system``): without Linux's facilities the harness imports and falls back.

The absence is simulated in a fresh interpreter: no ``resource`` module, no SIGUSR1, no
``sched_getaffinity``, no glibc ``malloc_trim`` and no ``/proc``, as on Windows (and partly macOS).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from harness import system

WITHOUT_LINUX = textwrap.dedent("""
    import json, os, signal, sys
    import psutil  # loaded first: on Linux it needs resource itself, on Windows it does not
    sys.modules["resource"] = None  # import resource -> ImportError, as on Windows
    for module, name in ((signal, "SIGUSR1"), (os, "sched_getaffinity")):  # macOS lacks the one, Windows both
        if hasattr(module, name):
            delattr(module, name)
    real_platform, sys.platform = sys.platform, "win32"  # no glibc lookup for malloc_trim
    from pathlib import Path
    import harness.system as system
    sys.platform = real_platform
    system._STATUS = system._CLEAR_REFS = Path("/nonexistent/proc/self/status")
    import harness, harness.plugin, harness.worker.child, harness.worker.client, harness.preparation.probe
    import harness.preparation.probe_child, harness.checks.memory, harness.checks.reference
    import harness.checks.reference_child
    system.disable_core_dumps()
    print(json.dumps({
        "trim": system.trim_heap(),
        "kernel_peak": system.kernel_peak_rss_bytes(),
        "reset": system.reset_kernel_peak_rss(),
        "stack_dump": system.register_stack_dump(),
        "ask_stacks": system.request_stack_dump(os.getpid()),
        "cores": system.usable_cores() == (os.cpu_count() or 1),
        "peak_mb": system.process_peak_rss_mb(),
        "rss": system.rss_bytes() > 0,
    }))
""")


def test_without_linux_facilities_the_harness_imports_and_falls_back() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_LINUX], capture_output=True, text=True, timeout=120, encoding="utf-8"
    )
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    peak_mb = facts.pop("peak_mb")
    assert facts == {"trim": False, "kernel_peak": None, "reset": False, "stack_dump": False, "ask_stacks": False,
                     "cores": True, "rss": True}
    if sys.platform == "win32":  # without resource, the lifetime peak is psutil's peak_wset, which Windows has
        assert peak_mb > 10
    else:  # psutil has no peak_wset off Windows: nothing to report
        assert peak_mb is None


def test_on_linux_the_facilities_are_used() -> None:
    """The same functions on this Linux host: the fallbacks above are not what runs here."""
    if not sys.platform.startswith("linux"):
        return
    assert system.trim_heap() is True
    peak = system.kernel_peak_rss_bytes()
    assert peak is not None and peak > 10 * 2**20
    assert system.STACK_DUMP_SIGNAL is not None
    process_peak = system.process_peak_rss_mb()
    assert process_peak is not None and process_peak > 10


def test_rss_bytes_sees_memory_this_process_takes() -> None:
    before = system.rss_bytes()
    kept = b"\x01" * (32 * 2**20)
    assert system.rss_bytes() - before >= 30 * 2**20 and kept
    assert system.this_process() is system.this_process()
