"""A model served from a child process, so that a native crash or a hang fails one request, not the session.

onnxruntime-genai aborts or segfaults the whole process on some inputs; a suite that drives it
in-process dies on the first one and reports nothing. The worker (``python -m harness.worker
--model PATH``) loads the model once and answers one JSON line per request on its stdin; the parent's
``WorkerClient`` gives each request a time limit, restarts the worker when it died, and classifies
what happened: answered, rejected (an exception, with its class), crashed (signal or exit code, with
the worker's stderr) or hung (killed after the limit).

Requests are JSON objects (ASCII: ``json.dumps`` escapes lone surrogates as ``\\udXXX`` and reads
them back unchanged, so text that is not valid UTF-8 crosses the pipe intact)::

    {"id": 1, "prompt": {"text": "..."}, "options": {"max_new_tokens": 8}}
    {"id": 2, "prompt": {"messages": [{"role": "user", "content": "..."}]}, "raw": {"top_k": -1},
     "max_new_tokens": 8}
    {"id": 3, "prompt": {"fill": " the", "context_offset": 1}, "options": {}}

``options`` go through the harness's ``SearchOptions`` (its own validation); ``raw`` goes straight to
onnxruntime-genai's ``set_search_options``, so the runtime's own checks are exercised. A ``fill``
prompt repeats a unit up to an exact token count (``tokens``, or the context length plus
``context_offset``). ``--runtime module:factory`` (or HARNESS_WORKER_RUNTIME) loads another runtime:
``factory(path, ep)``; the project's tests use it to inject faults (``harness.worker_fakes``).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import json
import os
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from harness.errors import HarnessError
from harness.runtime import GenAIRuntime, Generation, ModelInfo, Prompt, SearchOptions, run_generator, translate_error

RUNTIME_ENV = "HARNESS_WORKER_RUNTIME"
DEFAULT_RUNTIME = "harness.worker:RawGenAIRuntime"
LOAD_TIMEOUT_S = 300.0  # model load; a 135M model loads in about 1 s here, a 7B one can take minutes
STDERR_TAIL = 4000  # characters of the worker's stderr kept with a crash or a hang

Kind = Literal["answered", "rejected", "crashed", "hung"]
KINDS: tuple[Kind, ...] = ("answered", "rejected", "crashed", "hung")


class WorkerError(HarnessError):
    """The worker could not be started or broke the protocol (not a verdict on the model)."""


# -- what the worker serves ---------------------------------------------------------------------------
class WorkerRuntime(Protocol):
    """The part of ``harness.runtime.Runtime`` the worker uses; ``generate_raw`` is optional."""

    info: ModelInfo

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def generate(self, prompt: Prompt, options: SearchOptions = ...) -> Generation: ...

    def close(self) -> None: ...


class RawGenAIRuntime(GenAIRuntime):
    """``GenAIRuntime`` plus a raw path: options straight to ``set_search_options``, no harness checks."""

    def generate_raw(self, prompt: Prompt, options: Mapping[str, Any], max_new_tokens: int) -> Generation:
        og = self._og
        text = prompt if isinstance(prompt, str) else self.chat_prompt(prompt)
        ids = self.encode(text)
        try:
            params = og.GeneratorParams(self._model)
            params.set_search_options(**options)
            generator = og.Generator(self._model, params)
        except RuntimeError as exc:
            raise translate_error(exc, "raw request") from exc
        greedy = not options.get("do_sample", False)
        return run_generator(generator, ids, max_new_tokens, greedy, self.info, self.decode, "raw request")


def load_runtime(spec: str, path: Path, ep: str) -> WorkerRuntime:
    """``module:factory`` called as ``factory(path, ep)``."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise WorkerError(f"harness: worker runtime {spec!r} must be module:factory, e.g. {DEFAULT_RUNTIME}")
    factory = getattr(importlib.import_module(module_name), attribute)
    runtime: WorkerRuntime = factory(path, ep)
    return runtime


def fill_text(runtime: WorkerRuntime, unit: str, tokens: int) -> str:
    """The shortest prefix of ``unit`` repeated that encodes to exactly ``tokens`` tokens."""
    if not unit:
        raise WorkerError("harness: a fill prompt needs a non-empty unit to repeat")

    def count(length: int) -> int:
        return len(runtime.encode((unit * (length // len(unit) + 1))[:length]))

    low, high = 0, len(unit) * max(tokens, 1)
    while count(high) < tokens and high < 64 * len(unit) * max(tokens, 1):
        high *= 2
    while low < high:  # the smallest length with at least ``tokens`` tokens
        middle = (low + high) // 2
        low, high = (middle + 1, high) if count(middle) < tokens else (low, middle)
    if count(low) != tokens:
        raise WorkerError(f"harness: cannot build a prompt of exactly {tokens} tokens by repeating {unit!r} "
                          "with this tokenizer; choose another fill unit")
    return (unit * (low // len(unit) + 1))[:low]


def build_prompt(runtime: WorkerRuntime, spec: Mapping[str, Any]) -> Any:
    """The prompt a request describes (left as sent: checking it is the runtime's job)."""
    if "text" in spec:
        return spec["text"]
    if "messages" in spec:
        return spec["messages"]
    if "fill" in spec:
        tokens = spec.get("tokens")
        if tokens is None:
            tokens = runtime.info.context_length + int(spec.get("context_offset", 0))
        return fill_text(runtime, str(spec["fill"]), int(tokens))
    raise WorkerError(f"harness: worker request has no prompt (text, messages or fill): {dict(spec)!r}")


def handle(runtime: WorkerRuntime, request: Mapping[str, Any]) -> dict[str, Any]:
    """Answer one request; any exception becomes a rejection naming its class (a crash ends the process)."""
    try:
        prompt = build_prompt(runtime, request.get("prompt", {}))
        if request.get("raw") is not None:
            generate_raw = getattr(runtime, "generate_raw", None)
            if generate_raw is None:
                raise WorkerError(f"harness: {type(runtime).__name__} has no raw path (generate_raw)")
            generation = generate_raw(prompt, request["raw"], int(request.get("max_new_tokens", 8)))
        else:
            generation = runtime.generate(prompt, SearchOptions(**request.get("options") or {}))
    except Exception as exc:
        return {"kind": "rejected", "error": type(exc).__name__,
                "classes": [cls.__name__ for cls in type(exc).__mro__], "message": str(exc)}
    return {"kind": "answered", "text": generation.text, "token_ids": list(generation.token_ids),
            "prompt_tokens": generation.prompt_tokens, "prompt_text": runtime.decode(generation.prompt_token_ids),
            "stop_reason": generation.stop_reason, "seconds": generation.total_seconds}


def _line(message: Mapping[str, Any]) -> bytes:
    return (json.dumps(message, ensure_ascii=True) + "\n").encode("ascii")


def serve(runtime: WorkerRuntime, requests: Iterable[bytes], responses: IO[bytes]) -> None:
    for raw in requests:
        if not raw.strip():
            continue
        request = json.loads(raw)
        responses.write(_line({"id": request.get("id"), **handle(runtime, request)}))
        responses.flush()


def _claim_stdout() -> IO[bytes]:
    """The protocol gets a private copy of stdout; fd 1 then points at stderr, so whatever native
    code prints cannot corrupt a response."""
    protocol = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol, "wb", buffering=0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.worker",
                                     description="serve a model over JSON lines on stdin / stdout")
    parser.add_argument("--model", required=True, type=Path, help="onnxruntime-genai model folder")
    parser.add_argument("--ep", default="cpu", help="execution provider")
    parser.add_argument("--runtime", default=os.environ.get(RUNTIME_ENV) or DEFAULT_RUNTIME,
                        help=f"module:factory called as factory(path, ep) [env {RUNTIME_ENV}]")
    parser.add_argument("--replay", type=Path, metavar="FILE",
                        help="run the request of a reproducer file (in this process: a crash is not caught)")
    args = parser.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash is expected here; no core files
    faulthandler.enable()  # the Python stack of a crash goes to stderr, which the parent keeps
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # and that of a hang, before the parent kills it
    protocol = _claim_stdout()
    try:
        runtime = load_runtime(args.runtime, args.model, args.ep)
    except Exception as exc:
        protocol.write(_line({"ready": False, "error": f"loading {args.runtime} on {args.model}: "
                                                       f"{type(exc).__name__}: {exc}"}))
        return 1
    info = runtime.info
    protocol.write(_line({"ready": True, "pid": os.getpid(), "context_length": info.context_length,
                          "vocab_size": info.vocab_size, "eos_token_ids": list(info.eos_token_ids)}))
    if args.replay is not None:
        request = json.loads(args.replay.read_text(encoding="utf-8"))["request"]
        protocol.write(_line(handle(runtime, request)))
        return 0
    serve(runtime, sys.stdin.buffer, protocol)
    runtime.close()
    return 0


# -- the parent side -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerInfo:
    pid: int
    context_length: int
    vocab_size: int
    eos_token_ids: tuple[int, ...]


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
    signal: str | None = None  # crashed by a signal: its name
    exit_code: int | None = None  # crashed: the process's return code
    stderr: str = field(default="", repr=False)  # crashed / hung: the worker's stderr during the request

    def summary(self) -> str:
        """One line, e.g. ``crashed: SIGSEGV`` or ``rejected: ContextOverflow: harness: ...``."""
        if self.kind == "answered" and self.answer is not None:
            return (f"answered {len(self.answer.token_ids)} tokens ({self.answer.stop_reason}): "
                    f"{shorten(self.answer.text, 80)}")
        if self.kind == "rejected":
            return f"rejected: {self.error}: {cut(first_line(self.message))}"
        return f"{self.kind}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "seconds": round(self.seconds, 4), "summary": self.summary()}
        if self.kind == "rejected":
            data.update(error=self.error, message=self.message)
        if self.kind in ("crashed", "hung"):
            data.update(signal=self.signal, exit_code=self.exit_code, stderr=self.stderr)
        return data


def shorten(text: str, limit: int = 160) -> str:
    """``repr`` of a text, cut in the middle when long (surrogates and controls stay visible)."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit // 2]}...{shown[-limit // 2:]} ({len(text)} chars)"


def cut(text: str, limit: int = 200) -> str:
    """A message cut to ``limit`` characters."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "(no message)"


def death(returncode: int) -> tuple[str, str | None]:
    """How a process ended: ('SIGSEGV', 'SIGSEGV') for a signal, ('exit code 3', None) otherwise."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return name, name
    return (f"exit code {returncode}" if returncode else "exited (code 0) without answering"), None


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
        spec = runtime or os.environ.get(RUNTIME_ENV)
        return cls([*command, "--runtime", spec] if spec else command)

    @property
    def restarts(self) -> int:
        return max(self.starts - 1, 0)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _stderr_since(self, offset: int) -> str:
        size = os.fstat(self._stderr.fileno()).st_size
        start = max(offset, size - STDERR_TAIL)
        return os.pread(self._stderr.fileno(), size - start, start).decode("utf-8", "replace")

    def _stderr_size(self) -> int:
        return os.fstat(self._stderr.fileno()).st_size

    def start(self) -> WorkerInfo:
        self.stop()
        offset = self._stderr_size()
        process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=self._stderr, env=self.env, start_new_session=True)
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
            raise WorkerError(f"harness: the model worker did not start ({reason}): {' '.join(self.command)}\n"
                              f"worker stderr:\n{self._stderr_since(offset)}")
        self.info = WorkerInfo(int(ready["pid"]), int(ready["context_length"]), int(ready["vocab_size"]),
                               tuple(ready["eos_token_ids"]))
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
            process.stdin.write(_line({**payload, "id": self._next_id}))
            process.stdin.flush()
            line = self._lines.get(timeout=timeout_s)
        except BrokenPipeError:
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
            except subprocess.TimeoutExpired:
                self.stop()
                returncode = process.returncode if process.returncode is not None else -signal.SIGKILL
            message, signal_name = death(returncode)
            return Outcome("crashed", time.monotonic() - started, message=message, signal=signal_name,
                           exit_code=returncode, stderr=self._stderr_since(offset))
        response = _parse(line)
        if response.get("id") != self._next_id:
            self.stop()
            raise WorkerError(f"harness: the model worker answered request {response.get('id')} to request "
                              f"{self._next_id}: {line[:200]!r}")
        return self._outcome(response, time.monotonic() - started)

    @staticmethod
    def _dump_stacks(process: subprocess.Popen[bytes], wait_s: float = 0.5) -> None:
        """Ask a hung worker for its Python stacks (faulthandler on SIGUSR1), to show where it hangs."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGUSR1)
            time.sleep(wait_s)

    @staticmethod
    def _outcome(response: Mapping[str, Any], seconds: float) -> Outcome:
        if response["kind"] == "answered":
            answer = Answer(response["text"], tuple(response["token_ids"]), int(response["prompt_tokens"]),
                            response["prompt_text"], response["stop_reason"])
            return Outcome("answered", seconds, answer=answer)
        return Outcome("rejected", seconds, error=response["error"], classes=tuple(response["classes"]),
                       message=response["message"])

    def stop(self) -> None:
        """Kill the worker (its whole process group) if it still runs, and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()

    def close(self) -> None:
        process = self._process
        if process is not None and process.stdin is not None and process.poll() is None:
            try:
                process.stdin.close()
                process.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                pass
        self.stop()
        self._stderr.close()

    def __enter__(self) -> WorkerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
