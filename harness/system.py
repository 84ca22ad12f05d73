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
- ``disable_crash_dialogs``: on Windows, ``SetErrorMode`` so a native crash in the worker ends it at once instead of
  waiting on a Windows Error Reporting dialog (which would look like a hang); a no-op elsewhere.
- ``process_group_options`` / ``kill_tree``: the worker starts in a group of its own (POSIX ``start_new_session``;
  Windows ``CREATE_NEW_PROCESS_GROUP``) and a hung one is killed with everything it started (POSIX ``killpg``
  SIGKILL; without ``killpg``, it and the descendants psutil lists, each with ``TerminateProcess`` on Windows).
- ``read_at``: a file's bytes without moving the offset it shares with a child writing to it (``os.pread``; without
  it, seek, read and seek back).
- ``closed_pipe``: a write to a process that is gone (BrokenPipeError; EINVAL on Windows).
- ``exit_cause``: a return code in words: a POSIX signal (negative code) or, on Windows, a crash code
  (0xC0000005 access violation, 3 from ``abort()``, ...); decided from the platform at run time.
- ``register_stack_dump`` / ``request_stack_dump``: a hung worker prints its Python stacks on ``SIGUSR1``;
  without the signal (Windows) the hang is reported without them.
- ``usable_cores``: the cores this process may run on (``sched_getaffinity``), else ``os.cpu_count()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import faulthandler
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

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
    if sys.platform != "win32" and resource is not None:  # the platform check is for mypy --platform win32
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2**20 if sys.platform == "darwin" else KB)
    with contextlib.suppress(ImportError, AttributeError):
        return float(this_process().memory_info().peak_wset) / 2**20  # Windows
    return None


def disable_core_dumps() -> None:
    """No core files from a process where crashes are expected (the worker)."""
    if sys.platform != "win32" and resource is not None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


SEM_FAILCRITICALERRORS, SEM_NOGPFAULTERRORBOX, SEM_NOOPENFILEERRORBOX = 0x0001, 0x0002, 0x8000


def disable_crash_dialogs() -> bool:
    """On Windows, no error dialog for a crash, a critical error or a file that cannot be opened in this process
    (the worker): a dialog would keep the crashed process alive until the parent calls it hung. False elsewhere."""
    if sys.platform != "win32":
        return False
    ctypes.windll.kernel32.SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX | SEM_NOOPENFILEERRORBOX)
    return True


def process_group_options() -> dict[str, Any]:
    """``subprocess.Popen`` arguments that start the child in a process group of its own, away from the
    terminal's Ctrl+C: a new session on POSIX, ``CREATE_NEW_PROCESS_GROUP`` on Windows (which ignores
    ``start_new_session``)."""
    flag: int | None = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", None)  # Windows only
    return {"start_new_session": True} if flag is None else {"creationflags": flag}


def kill_tree(process: subprocess.Popen[Any]) -> None:
    """Kill ``process`` and every process it started, so nothing of a hung worker runs on.

    POSIX: SIGKILL to the group ``process_group_options`` gave it. Without ``killpg`` (Windows, where no group
    can be signalled): its descendants as psutil lists them before it dies, then it, then them, each with
    ``terminate()``, which is ``TerminateProcess`` there, the same as ``kill()``.
    """
    killpg, sigkill = getattr(os, "killpg", None), getattr(signal, "SIGKILL", None)
    if killpg is not None and sigkill is not None:
        with contextlib.suppress(ProcessLookupError):
            killpg(process.pid, sigkill)
        process.kill()  # should it lead no group of its own
        return
    _terminate_tree(process)


def _terminate_tree(process: subprocess.Popen[Any]) -> None:
    import psutil

    try:
        descendants: list[psutil.Process] = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    process.terminate()  # first, so that it starts no more
    for descendant in descendants:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            descendant.terminate()


def read_at(fd: int, start: int, size: int) -> bytes:
    """Up to ``size`` bytes of file ``fd`` from ``start``, leaving the file's offset where it was: a child
    that inherited the file writes at that offset (``os.pread``; without it, seek, read and seek back)."""
    pread = getattr(os, "pread", None)
    if pread is not None:
        data: bytes = pread(fd, size, start)
        return data
    kept = os.lseek(fd, 0, os.SEEK_CUR)
    chunks: list[bytes] = []
    try:
        os.lseek(fd, start, os.SEEK_SET)
        while size > 0 and (chunk := os.read(fd, size)):
            chunks.append(chunk)
            size -= len(chunk)
    finally:
        os.lseek(fd, kept, os.SEEK_SET)
    return b"".join(chunks)


def closed_pipe(error: OSError) -> bool:
    """Whether ``error`` is a write to a pipe whose reader is gone: BrokenPipeError, or EINVAL on Windows."""
    return isinstance(error, BrokenPipeError) or error.errno == errno.EINVAL


# Windows return codes of a native crash: NTSTATUS exception codes, and abort()'s exit code.
WINDOWS_CRASHES: dict[int, str] = {
    0xC0000005: "access violation",
    0xC00000FD: "stack overflow",
    0xC0000374: "heap corruption",
    0xC000001D: "illegal instruction",
    0xC0000094: "integer divide by zero",
    0xC0000409: "fail-fast",  # __fastfail / stack buffer overrun: the CRT's abort on some builds
    0xC0000135: "DLL not found",
}
WINDOWS_ABORT = 3  # abort() (and Python's os.abort) end the process with exit code 3 on Windows
NTSTATUS_ERROR = 0xC0000000  # the severity bits of an NTSTATUS error code


class ExitCause(NamedTuple):
    """How a child process ended, in words."""

    kind: Literal["exit", "signal", "crash"]  # an exit code; a POSIX signal; a native crash on Windows
    text: str  # "exit code 2", "SIGSEGV", "access violation (0xC0000005)", "abort (exit code 3)"

    @property
    def name(self) -> str | None:
        """The signal or the crash that ended it; None for an ordinary exit."""
        return None if self.kind == "exit" else self.text


def exit_cause(returncode: int, platform: str | None = None) -> ExitCause:
    """What ``returncode`` says about how a process ended on ``platform`` (this one by default)."""
    if (platform or sys.platform) == "win32":
        return _windows_exit_cause(returncode)
    if returncode < 0:
        try:
            return ExitCause("signal", signal.Signals(-returncode).name)
        except ValueError:
            return ExitCause("signal", f"signal {-returncode}")
    return ExitCause("exit", f"exit code {returncode}")


def _windows_exit_cause(returncode: int) -> ExitCause:
    code = returncode & 0xFFFFFFFF  # a DWORD, which some callers read as a signed int
    if code in WINDOWS_CRASHES:
        return ExitCause("crash", f"{WINDOWS_CRASHES[code]} (0x{code:08X})")
    if code == WINDOWS_ABORT:
        return ExitCause("crash", f"abort (exit code {WINDOWS_ABORT})")
    if code >= NTSTATUS_ERROR:
        return ExitCause("crash", f"Windows status 0x{code:08X}")
    return ExitCause("exit", f"exit code {returncode}")


def register_stack_dump() -> bool:
    """Print this process's Python stacks on ``STACK_DUMP_SIGNAL``; False where there is no such signal."""
    if sys.platform == "win32" or STACK_DUMP_SIGNAL is None:  # faulthandler.register is not there on Windows
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
