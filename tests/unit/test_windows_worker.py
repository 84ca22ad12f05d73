"""The crash-isolation worker on a simulated Windows, at run time: the real ``WorkerClient`` drives small fake
workers (a script speaking the worker protocol) with ``os.pread``, ``os.killpg`` and ``signal.SIGKILL`` taken away,
no stack-dump signal, ``subprocess.CREATE_NEW_PROCESS_GROUP`` present and ``sys.platform`` "win32".

Linux's ``Popen`` refuses ``creationflags``, so the simulation's ``Popen`` notes the flag and drops it; and a Linux
process cannot exit with a Windows crash code such as 0xC0000005, so those are named through ``death`` directly and
the fake crashes with 3, the code of ``abort()`` on Windows.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness import system
from harness.preparation.buildlog import fail
from harness.runtime.genai import read_model_info
from harness.testing.fakes import write_genai_folder
from harness.worker.client import WorkerClient, death
from harness.worker.protocol import WorkerError

HELLO = {"prompt": {"text": "hello"}, "options": {"max_new_tokens": 2}}
CREATE_NEW_PROCESS_GROUP = 0x200  # its value on Windows

FAKE_WORKER = textwrap.dedent("""
    import json, os, subprocess, sys, time

    mode, model = sys.argv[1], json.loads(sys.argv[2])
    if mode == "fails":  # stderr as bytes: the same on every OS (Windows' text stderr would write "\\r\\n")
        sys.stderr.buffer.write(b"ImportError: DLL load failed while importing onnxruntime_genai\\n")
        print(json.dumps({"ready": False, "error": "loading the model: ImportError"}), flush=True)
        sys.exit(1)
    if mode == "silent":
        time.sleep(300)
    if mode == "hangs":
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    print(json.dumps({"ready": True, "pid": os.getpid(), "model": model}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if mode == "crashes":
            sys.stderr.buffer.write(f"native code: crashing on request {request['id']}\\n".encode())
            sys.stderr.flush()
            os._exit(3)  # what abort() exits with on Windows
        if mode == "hangs":
            time.sleep(300)
        print(json.dumps({"id": request["id"], "kind": "answered", "text": "ok", "token_ids": [1, 2],
                          "prompt_tokens": 1, "prompt_text": "hello", "stop_reason": "length"}), flush=True)
""")

CHILD_ON_WINDOWS = textwrap.dedent("""
    import ctypes, sys
    from harness.worker.child import main

    class Kernel32:
        @staticmethod
        def SetErrorMode(mode):
            print(f"SetErrorMode({mode:#06x})", file=sys.stderr, flush=True)
            return 0

    ctypes.windll = type("WinDLL", (), {"kernel32": Kernel32})  # what ctypes has on Windows
    sys.platform = "win32"  # after the imports: the worker's start-up runs as on Windows
    sys.exit(main(sys.argv[1:]))
""")


@dataclass
class SimulatedWindows:
    """What the simulation saw: each worker started, and the process-group arguments it was started with."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    group_options: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> SimulatedWindows:
    """Windows simulated on a POSIX host; on Windows itself, the real thing (with the same notes taken)."""
    real_windows = sys.platform == "win32"
    monkeypatch.delattr(os, "pread", raising=False)
    monkeypatch.delattr(os, "killpg", raising=False)
    monkeypatch.delattr(signal, "SIGKILL", raising=False)
    monkeypatch.setattr(system, "STACK_DUMP_SIGNAL", None)  # no SIGUSR1 on Windows
    monkeypatch.setattr(subprocess, "CREATE_NEW_PROCESS_GROUP", CREATE_NEW_PROCESS_GROUP, raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    seen, real_popen = SimulatedWindows(), subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        seen.group_options.append({key: kwargs[key] for key in ("creationflags", "start_new_session") if key in kwargs})
        if not real_windows:
            kwargs.pop("creationflags", None)  # POSIX's Popen refuses it
        process: subprocess.Popen[bytes] = real_popen(*args, **kwargs)
        seen.started.append(process)
        return process

    monkeypatch.setattr(subprocess, "Popen", popen)
    return seen


@pytest.fixture
def fake(tmp_path: Path) -> Callable[[str], list[str]]:
    """The command of a fake worker that answers, crashes, hangs, fails to load, or says nothing."""
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER, encoding="utf-8")
    model = json.dumps(read_model_info(write_genai_folder(tmp_path / "model")).to_json())
    return lambda mode: [sys.executable, str(script), mode, model]


def runs(process: psutil.Process, within_s: float = 10.0) -> bool:
    """Whether ``process`` still runs after up to ``within_s`` seconds for a kill to land. A killed process
    that nobody reaps stays a zombie: it runs no more."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)


# -- the client end to end -----------------------------------------------------------------------------
def test_a_worker_answers_and_starts_in_a_process_group_of_its_own(fake: Callable[[str], list[str]],
                                                                   windows: SimulatedWindows) -> None:
    with WorkerClient(fake("answers")) as client:
        answered = client.request(HELLO, timeout_s=30)
    assert answered.kind == "answered" and answered.answer is not None and answered.answer.text == "ok"
    assert windows.group_options == [{"creationflags": CREATE_NEW_PROCESS_GROUP}]  # start_new_session: no group


def test_a_crash_is_named_as_on_windows_with_its_own_stderr(fake: Callable[[str], list[str]],
                                                            windows: SimulatedWindows) -> None:
    with WorkerClient(fake("crashes")) as client:
        first = client.request(HELLO, timeout_s=30)
        second = client.request(HELLO, timeout_s=30)
        starts = client.starts
    assert (first.kind, first.summary(), first.signal, first.exit_code) == (
        "crashed", "crashed: abort (exit code 3)", "abort (exit code 3)", 3)
    assert first.stderr == "native code: crashing on request 1\n"
    assert second.stderr == "native code: crashing on request 2\n"  # the restarted worker's, read without pread
    assert starts == 2


def test_a_hang_kills_the_worker_and_what_it_started(fake: Callable[[str], list[str]],
                                                     windows: SimulatedWindows) -> None:
    with WorkerClient(fake("hangs")) as client:
        worker = psutil.Process(client.start().pid)
        (grandchild,) = worker.children(recursive=True)
        hung = client.request(HELLO, timeout_s=1.0)
    assert hung.kind == "hung" and hung.summary() == "hung: no answer within 1 s (worker killed)"
    assert not runs(worker) and not runs(grandchild)


@pytest.mark.parametrize(("mode", "reason", "stderr"), [
    ("fails", "loading the model: ImportError", "ImportError: DLL load failed while importing onnxruntime_genai"),
    ("silent", "not ready within 2 s", None),
])
def test_a_worker_that_does_not_start_is_one_error_with_its_stderr(fake: Callable[[str], list[str]],
                                                                   windows: SimulatedWindows, mode: str, reason: str,
                                                                   stderr: str | None) -> None:
    with WorkerClient(fake(mode), load_timeout_s=2.0) as client, pytest.raises(WorkerError) as error:
        client.start()
    first, *rest = str(error.value).splitlines()
    assert first == f"the model worker did not start ({reason}): {' '.join(fake(mode))}"
    assert rest[0] == "worker stderr:"
    if stderr is not None:
        assert rest[1:] == [stderr]
    (process,) = windows.started
    assert process.poll() is not None  # killed (silent) or exited (fails), and reaped


class ReaderGone:
    """The worker's stdin as Windows shows it once the worker has exited: a write raises OSError(EINVAL), not
    BrokenPipeError."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None
        self.process, self.pipe = process, process.stdin

    def write(self, data: bytes) -> int:
        self.pipe.close()  # the worker sees the end of its input and exits
        self.process.wait()
        raise OSError(errno.EINVAL, "Invalid argument")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_worker_gone_before_the_request_is_a_crash_not_an_error(fake: Callable[[str], list[str]],
                                                                  windows: SimulatedWindows) -> None:
    with WorkerClient(fake("answers")) as client:
        client.start()
        (process,) = windows.started
        process.stdin = ReaderGone(process)  # type: ignore[assignment]
        crashed = client.request(HELLO, timeout_s=30)
    assert (crashed.kind, crashed.summary()) == ("crashed", "crashed: exited (code 0) without answering")


def test_the_worker_turns_off_crash_dialogs_at_start_up(tmp_path: Path) -> None:
    folder = write_genai_folder(tmp_path / "model")
    done = subprocess.run([sys.executable, "-c", CHILD_ON_WINDOWS, "--model", str(folder), "--runtime",
                           "harness.testing.worker_fakes:fake_runtime"], input="", capture_output=True, text=True,
                          encoding="utf-8", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "SetErrorMode(0x8003)" in done.stderr.splitlines()
    assert json.loads(done.stdout.splitlines()[0])["ready"] is True


# -- the platform seams (harness.system) ---------------------------------------------------------------
@pytest.mark.parametrize(("code", "name"), [
    (0xC0000005, "access violation (0xC0000005)"),
    (-1073741819, "access violation (0xC0000005)"),  # the same code read as a signed int
    (0xC00000FD, "stack overflow (0xC00000FD)"),
    (3, "abort (exit code 3)"),
    (0xC0000374, "heap corruption (0xC0000374)"),
    (0xC000001D, "illegal instruction (0xC000001D)"),
    (0xC0000094, "integer divide by zero (0xC0000094)"),
    (0xC0000409, "fail-fast (0xC0000409)"),
    (0xC0000135, "DLL not found (0xC0000135)"),
    (0xC0000017, "Windows status 0xC0000017"),
])
def test_death_names_windows_crash_codes(code: int, name: str) -> None:
    assert death(code, platform="win32") == (name, name)


@pytest.mark.parametrize(("code", "platform", "expected"), [
    (1, "win32", ("exit code 1", None)),
    (0, "win32", ("exited (code 0) without answering", None)),
    (0xC0000005, "linux", ("exit code 3221225477", None)),  # no such code on POSIX: not named there
    (3, "darwin", ("exit code 3", None)),
    (-signal.SIGSEGV, "linux", ("SIGSEGV", "SIGSEGV")),
])
def test_death_decides_from_the_platform(code: int, platform: str, expected: tuple[str, str | None]) -> None:
    assert death(code, platform=platform) == expected


def test_a_build_that_crashed_on_windows_names_the_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "build.log"
    log.write_text("loading weights\n", encoding="utf-8")
    monkeypatch.setattr(sys, "platform", "win32")
    assert str(fail("olive auto-opt int4", log, 0xC0000005)) == (
        "olive auto-opt int4 failed (exit 3221225477): crashed: access violation (0xC0000005); "
        f"last log line: loading weights; full log: {log}")


@pytest.mark.parametrize("pread", [True, False])
def test_read_at_leaves_the_offset_a_child_writes_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     pread: bool) -> None:
    if not pread:
        monkeypatch.delattr(os, "pread", raising=False)
    path = tmp_path / "stderr"
    with path.open("w+b") as shared:
        fd = shared.fileno()
        os.write(fd, b"first crash\nsecond")
        assert system.read_at(fd, 6, 5) == b"crash"
        assert system.read_at(fd, 12, 100) == b"second"
        os.write(fd, b" crash\n")  # the child writes on where it was
    assert path.read_bytes() == b"first crash\nsecond crash\n"


def test_process_group_options_follow_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(subprocess, "CREATE_NEW_PROCESS_GROUP", raising=False)
    assert system.process_group_options() == {"start_new_session": True}
    monkeypatch.setattr(subprocess, "CREATE_NEW_PROCESS_GROUP", CREATE_NEW_PROCESS_GROUP, raising=False)
    assert system.process_group_options() == {"creationflags": CREATE_NEW_PROCESS_GROUP}


def test_closed_pipe_knows_windows_einval() -> None:
    assert system.closed_pipe(BrokenPipeError(errno.EPIPE, "Broken pipe"))
    assert system.closed_pipe(OSError(errno.EINVAL, "Invalid argument"))
    assert not system.closed_pipe(OSError(errno.ENOSPC, "No space left on device"))


@pytest.fixture
def kernel32(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A stand-in for ``ctypes.windll.kernel32``: the error modes set."""
    modes: list[int] = []

    class Kernel32:
        @staticmethod
        def SetErrorMode(mode: int) -> int:
            modes.append(mode)
            return 0

    monkeypatch.setattr(ctypes, "windll", type("WinDLL", (), {"kernel32": Kernel32}), raising=False)
    return modes


def test_crash_dialogs_are_turned_off_on_windows_only(kernel32: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    assert system.disable_crash_dialogs() is False and kernel32 == []
    monkeypatch.setattr(sys, "platform", "win32")
    assert system.disable_crash_dialogs() is True
    assert kernel32 == [0x8003]  # SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX | SEM_NOOPENFILEERRORBOX
