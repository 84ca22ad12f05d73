"""The operating-system facilities the harness uses that Linux has and others may not, in one place.

Each has a documented fallback, so ``import harness`` and every suite work on Windows and macOS (the
deployment guide's readers are there); what a fallback loses is said here and in the reports:

- ``trim_heap``: glibc ``malloc_trim(0)``, so RSS shows what is held. Elsewhere a no-op: the memory suite's
  series then include freed-but-kept heap, and its gates may need room.
- ``kernel_peak_rss_bytes`` / ``reset_kernel_peak_rss``: Linux's VmHWM and its reset (``/proc/self/clear_refs``),
  a per-window peak that polling cannot miss. Elsewhere None / False: callers fall back to their samples.
- ``rss_bytes``: this process's resident set size now (psutil, on every platform); every RSS sampler of the
  harness reads it.
- ``process_peak_rss_mb``: the process's lifetime peak (``getrusage``; KB on Linux, bytes on macOS; psutil's
  ``peak_wset`` on Windows), or None.
- ``disable_core_dumps``: ``RLIMIT_CORE`` 0 in the crash-isolation worker; a no-op without ``resource``.
- ``register_stack_dump`` / ``request_stack_dump``: a hung worker prints its Python stacks on ``SIGUSR1``;
  without the signal (Windows) the hang is reported without them.
- ``usable_cores``: the cores this process may run on (``sched_getaffinity``), else ``os.cpu_count()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import faulthandler
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

KB = 1024
STACK_DUMP_SIGNAL: signal.Signals | None = getattr(signal, "SIGUSR1", None)
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_lifetime_peak = 0  # the highest kernel peak seen before any reset (see lifetime_peak_rss_bytes)
_process: psutil.Process | None = None  # this process, for psutil (see this_process)

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    trim: Callable[[int], int] | None = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def trim_heap() -> bool:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim(0)``); False where there is no such call."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def kernel_peak_rss_bytes() -> int | None:
    """The kernel's high-water mark of this process's RSS (Linux VmHWM), or None elsewhere."""
    try:
        for line in _STATUS.read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * KB
    except OSError:
        pass
    return None


def reset_kernel_peak_rss() -> bool:
    """Restart the kernel's peak-RSS mark (Linux 4.0+), so the next peak is this window's alone.

    It also resets what ``getrusage().ru_maxrss`` reports in this process; ``lifetime_peak_rss_bytes``
    keeps the process's true peak.
    """
    global _lifetime_peak
    before = kernel_peak_rss_bytes()
    if before is None:
        return False
    _lifetime_peak = max(_lifetime_peak, before)
    try:
        _CLEAR_REFS.write_text("5", encoding="utf-8")
    except OSError:
        return False
    return True


def lifetime_peak_rss_bytes() -> int | None:
    """This process's peak RSS since it started, across the resets the samplers make."""
    current = kernel_peak_rss_bytes()
    return None if current is None else max(current, _lifetime_peak)


def this_process() -> psutil.Process:
    """psutil's handle on this process, made once (and again in a forked child)."""
    global _process
    if _process is None or _process.pid != os.getpid():
        import psutil

        _process = psutil.Process()
    return _process


def rss_bytes() -> int:
    """This process's resident set size now: the one RSS sample the harness's samplers take."""
    return int(this_process().memory_info().rss)


def process_peak_rss_mb() -> float | None:
    """This process's lifetime peak RSS in MB, from whatever the platform offers; None if nothing does."""
    if resource is not None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2**20 if sys.platform == "darwin" else KB)
    with contextlib.suppress(ImportError, AttributeError):
        return float(this_process().memory_info().peak_wset) / 2**20  # Windows
    return None


def disable_core_dumps() -> None:
    """No core files from a process where crashes are expected (the worker)."""
    if resource is not None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def register_stack_dump() -> bool:
    """Print this process's Python stacks on ``STACK_DUMP_SIGNAL``; False where there is no such signal."""
    if STACK_DUMP_SIGNAL is None:
        return False
    faulthandler.register(STACK_DUMP_SIGNAL, all_threads=True)
    return True


def request_stack_dump(pid: int) -> bool:
    """Ask process ``pid`` for its Python stacks (see ``register_stack_dump``); False if it cannot be asked."""
    if STACK_DUMP_SIGNAL is None:
        return False
    try:
        os.kill(pid, STACK_DUMP_SIGNAL)
    except ProcessLookupError:
        return False
    return True


def usable_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
