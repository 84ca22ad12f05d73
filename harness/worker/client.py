"""The parent side of the worker: ``WorkerClient`` starts it, gives each request a time limit, restarts it
when it died, and classifies what happened (answered, rejected, crashed, hung)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness import system
from harness.runtime.protocol import ModelInfo
from harness.text import clip, shorten
from harness.worker.protocol import LOAD_TIMEOUT_S, STDERR_TAIL, Kind, WorkerError, encode_line

MESSAGE_SHOWN = 200  # characters of a rejection's message in a summary line


# -- the parent side -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerInfo:
    """The running worker: its process, the model it loaded, and whether its runtime has a raw path."""

    pid: int
    model: ModelInfo
    raw: bool = True  # the runtime has a raw path (``child.RawRuntime``)


@dataclass(frozen=True)
class Answer:
    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    prompt_text: str  # the prompt as the model saw it, decoded (special tokens skipped)
    stop_reason: str


@dataclass(frozen=True)
class Outcome:
    """What one request did to the worker."""

    kind: Kind
    seconds: float
    answer: Answer | None = None  # answered
    error: str = ""  # rejected: the exception's class
    classes: tuple[str, ...] = ()  # rejected: the class and its bases, to match a family of errors
    message: str = ""  # rejected: the exception's message; crashed / hung: what happened
    signal: str | None = None  # crashed by a signal, or by a native crash on Windows: its name (``death``)
    exit_code: int | None = None  # crashed: the process's return code
    reached_runtime: bool = True  # rejected: False when the harness refused the settings before the runtime saw any
    stderr: str = field(default="", repr=False)  # crashed / hung: the worker's stderr during the request

    @property
    def reason(self) -> str:
        """Rejected: the exception's class and the first line of its message, cut to ``MESSAGE_SHOWN``."""
        return f"{self.error}: {clip(first_line(self.message), MESSAGE_SHOWN, mark_counts=True)}"

    def summary(self) -> str:
        """One line, e.g. ``crashed: SIGSEGV`` or ``rejected: ContextOverflow: harness: ...``."""
        if self.kind == "answered" and self.answer is not None:
            return (f"answered {len(self.answer.token_ids)} tokens ({self.answer.stop_reason}): "
                    f"{shorten(self.answer.text, 80)}")
        if self.kind == "rejected":
            return f"rejected: {self.reason}"
        return f"{self.kind}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "seconds": round(self.seconds, 4), "summary": self.summary()}
        if self.kind == "rejected":
            data.update(error=self.error, message=self.message)
        if self.kind in ("crashed", "hung"):
            data.update(signal=self.signal, exit_code=self.exit_code, stderr=self.stderr)
        return data


def first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "(no message)"


def death(returncode: int, platform: str | None = None) -> tuple[str, str | None]:
    """How the worker ended, as (message, signal): ('SIGSEGV', 'SIGSEGV') for a signal; on Windows
    ('access violation (0xC0000005)', the same) for a native crash; ('exit code 2', None) otherwise
    (``harness.system.exit_cause``, on ``platform``, this one by default)."""
    if returncode == 0:
        return "exited (code 0) without answering", None
    cause = system.exit_cause(returncode, platform)
    return cause.text, cause.name


def _parse(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    return message if isinstance(message, dict) else {}


def _pump(stream: IO[bytes], lines: queue.Queue[bytes | None]) -> None:
    """Move the worker's output lines to a queue (None at the end), so reads can time out."""
    with stream:
        for line in stream:
            lines.put(line)
    lines.put(None)


class WorkerClient:
    """Starts the worker on first use, restarts it after it died, and times every request."""

    def __init__(self, command: Sequence[str], load_timeout_s: float = LOAD_TIMEOUT_S,
                 env: Mapping[str, str] | None = None) -> None:
        self.command = list(command)
        self.load_timeout_s = load_timeout_s
        self.env = dict(env) if env is not None else None
        self.starts = 0
        self.info: WorkerInfo | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (kept open for the client's life, closed in close())
        self._next_id = 0

    @classmethod
    def for_model(cls, model: Path, ep: str = "cpu", runtime: str | None = None) -> WorkerClient:
        command = [sys.executable, "-m", "harness.worker", "--model", str(model), "--ep", ep]
        return cls([*command, "--runtime", runtime] if runtime else command)

    @property
    def restarts(self) -> int:
        return max(self.starts - 1, 0)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _stderr_since(self, offset: int) -> str:
        """The worker's stderr from ``offset`` on (its last ``STDERR_TAIL`` bytes), read without moving the
        file offset the next worker writes at."""
        size = self._stderr_size()
        start = max(offset, size - STDERR_TAIL)
        text = system.read_at(self._stderr.fileno(), start, size - start).decode("utf-8", "replace")
        return text.replace("\r\n", "\n")  # a Windows child's text stderr ends its lines with CRLF

    def _stderr_size(self) -> int:
        return os.fstat(self._stderr.fileno()).st_size

    def start(self) -> WorkerInfo:
        self.stop()
        offset = self._stderr_size()
        process: subprocess.Popen[bytes] = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=self.env,
            **system.process_group_options())
        self._process, self._lines, self.starts = process, queue.Queue(), self.starts + 1
        assert process.stdout is not None
        threading.Thread(target=_pump, args=(process.stdout, self._lines), daemon=True).start()
        try:
            first = self._lines.get(timeout=self.load_timeout_s)
            reason = "it exited" if first is None else f"it said {first[:200]!r}"
        except queue.Empty:
            first, reason = None, f"not ready within {self.load_timeout_s:g} s"
        ready = _parse(first) if first else {}
        if not ready.get("ready"):
            self.stop()
            reason = ready.get("error") or reason
            raise WorkerError(f"the model worker did not start ({reason}): {' '.join(self.command)}\n"
                              f"worker stderr:\n{self._stderr_since(offset)}")
        self.info = WorkerInfo(int(ready["pid"]), ModelInfo.from_json(ready["model"]), bool(ready.get("raw", True)))
        return self.info

    def request(self, payload: Mapping[str, Any], timeout_s: float) -> Outcome:
        """Send one request and classify what happened within ``timeout_s`` seconds."""
        if not self.alive:
            self.start()
        process = self._process
        assert process is not None and process.stdin is not None
        self._next_id += 1
        offset, started = self._stderr_size(), time.monotonic()
        try:
            process.stdin.write(encode_line({**payload, "id": self._next_id}))
            process.stdin.flush()
            line = self._lines.get(timeout=timeout_s)
        except OSError as error:  # it died before reading the request
            if not system.closed_pipe(error):
                raise
            line = None
        except queue.Empty:
            self._dump_stacks(process)
            self.stop()
            return Outcome("hung", time.monotonic() - started,
                           message=f"no answer within {timeout_s:.3g} s (worker killed)",
                           stderr=self._stderr_since(offset))
        if line is None:
            try:
                returncode = process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # it closed its output but runs on
                self.stop()
                returncode = process.wait()
            message, signal_name = death(returncode)
            return Outcome("crashed", time.monotonic() - started, message=message, signal=signal_name,
                           exit_code=returncode, stderr=self._stderr_since(offset))
        response = _parse(line)
        if response.get("id") != self._next_id:
            self.stop()
            raise WorkerError(f"the model worker answered request {response.get('id')} to request "
                              f"{self._next_id}: {line[:200]!r}")
        return self._outcome(response, time.monotonic() - started)

    @staticmethod
    def _dump_stacks(process: subprocess.Popen[bytes], wait_s: float = 0.5) -> None:
        """Ask a hung worker for its Python stacks (``harness.system``: SIGUSR1 where it exists), to show where
        it hangs."""
        if system.request_stack_dump(process.pid):
            time.sleep(wait_s)

    @staticmethod
    def _outcome(response: Mapping[str, Any], seconds: float) -> Outcome:
        if response["kind"] == "answered":
            answer = Answer(response["text"], tuple(response["token_ids"]), int(response["prompt_tokens"]),
                            response["prompt_text"], response["stop_reason"])
            return Outcome("answered", seconds, answer=answer)
        return Outcome("rejected", seconds, error=response["error"], classes=tuple(response["classes"]),
                       message=response["message"], reached_runtime=bool(response.get("reached_runtime", True)))

    def stop(self) -> None:
        """Kill the worker and every process it started (``harness.system.kill_tree``) if it still runs, and
        reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            system.kill_tree(process)
        process.wait()
        if process.stdin is not None:
            with contextlib.suppress(OSError):  # the pipe to a dead process (BrokenPipeError; EINVAL on Windows)
                process.stdin.close()

    def close(self) -> None:
        process = self._process
        if process is not None and process.stdin is not None and process.poll() is None:
            try:
                process.stdin.close()
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):  # OSError: it is gone (BrokenPipeError; EINVAL on Windows)
                pass
        self.stop()
        self._stderr.close()

    def __enter__(self) -> WorkerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

