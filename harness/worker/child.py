"""The worker process: loads the model once and answers one JSON request per stdin line (protocol:
``harness.worker.protocol``); ``python -m harness.worker --model PATH``. ``--runtime module:factory`` loads
the runtime a conftest plugs in (``pytest_harness_runtime_factory``; the plugin passes it), so the worker drives
the same runtime as every other suite; the project's tests inject faults that way
(``harness.testing.worker_fakes``)."""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from harness import offline, system
from harness.errors import ConfigError
from harness.runtime import factory as runtime_factory
from harness.runtime.protocol import RawRuntime, Runtime, SearchOptions
from harness.worker.protocol import DEFAULT_RUNTIME, WorkerError, encode_line


# -- what the worker serves ---------------------------------------------------------------------------
def load_runtime(reference: str, path: Path, ep: str) -> Runtime:
    """The runtime the factory named by ``reference`` (``harness.runtime.factory``) loads."""
    try:
        factory = runtime_factory.load(reference)
    except ConfigError as exc:
        raise WorkerError(str(exc)) from None
    runtime: Runtime = factory(path, ep)
    return runtime


def fill_text(runtime: Runtime, unit: str, tokens: int) -> str:
    """The shortest prefix of ``unit`` repeated that encodes to exactly ``tokens`` tokens."""
    if not unit:
        raise WorkerError("a fill prompt needs a non-empty unit to repeat")

    def count(length: int) -> int:
        return len(runtime.encode((unit * (length // len(unit) + 1))[:length]))

    low, high = 0, len(unit) * max(tokens, 1)
    while count(high) < tokens and high < 64 * len(unit) * max(tokens, 1):
        high *= 2
    while low < high:  # the smallest length with at least ``tokens`` tokens
        middle = (low + high) // 2
        low, high = (middle + 1, high) if count(middle) < tokens else (low, middle)
    if count(low) != tokens:
        raise WorkerError(f"cannot build a prompt of exactly {tokens} tokens by repeating {unit!r} "
                          "with this tokenizer; choose another fill unit")
    return (unit * (low // len(unit) + 1))[:low]


def past_context_text(runtime: Runtime, unit: str) -> str:
    """``unit`` repeated until the text encodes to more tokens than the context holds: twice the context's
    worth of units first, doubled while the tokenizer merges them into fewer (a few encodes, no prefill)."""
    if not unit:
        raise WorkerError("a past-context prompt needs a non-empty unit to repeat")
    context = runtime.info.context_length
    repeats = 2 * (context + 1)
    for _ in range(5):  # up to 32 repeats a token (Qwen2.5 merges 8 x into one, SmolLM2 and Phi-3.5 4)
        text = unit * repeats
        if len(runtime.encode(text)) > context:
            return text
        repeats *= 2
    raise WorkerError(f"{unit!r} repeated {repeats // 2} times still fits the context of {context} tokens; "
                      "choose another unit")


def build_prompt(runtime: Runtime, spec: Mapping[str, Any]) -> Any:
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
    if "past_context" in spec:
        return past_context_text(runtime, str(spec["past_context"]))
    raise WorkerError(f"worker request has no prompt (text, messages, fill or past_context): {dict(spec)!r}")


def _rejection(exc: Exception, reached_runtime: bool = True) -> dict[str, Any]:
    return {"kind": "rejected", "error": type(exc).__name__, "classes": [cls.__name__ for cls in type(exc).__mro__],
            "message": str(exc), "reached_runtime": reached_runtime}


def handle(runtime: Runtime, request: Mapping[str, Any]) -> dict[str, Any]:
    """Answer one request; any exception becomes a rejection naming its class (a crash ends the process). Settings the
    harness refuses (``SearchOptions``) are refused before the runtime sees anything: ``reached_runtime`` is false."""
    try:
        options = None if request.get("raw") is not None else SearchOptions(**request.get("options") or {})
    except Exception as exc:
        return _rejection(exc, reached_runtime=False)
    try:
        prompt = build_prompt(runtime, request.get("prompt", {}))
        if options is None:
            if not isinstance(runtime, RawRuntime):
                raise WorkerError(f"{type(runtime).__name__} has no raw path (generate_raw)")
            generation = runtime.generate_raw(prompt, request["raw"], int(request.get("max_new_tokens", 8)))
        else:
            generation = runtime.generate(prompt, options)
    except Exception as exc:
        return _rejection(exc)
    return {"kind": "answered", "text": generation.text, "token_ids": list(generation.token_ids),
            "prompt_tokens": generation.prompt_tokens, "prompt_text": runtime.decode(generation.prompt_token_ids),
            "stop_reason": generation.stop_reason, "seconds": generation.total_seconds}


def serve(runtime: Runtime, requests: Iterable[bytes], responses: IO[bytes]) -> None:
    for raw in requests:
        if not raw.strip():
            continue
        request = json.loads(raw)
        responses.write(encode_line({"id": request.get("id"), **handle(runtime, request)}))
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
    parser.add_argument("--runtime", default=DEFAULT_RUNTIME,
                        help="module:factory called as factory(path, ep): the pytest_harness_runtime_factory's "
                             "(the plugin passes it)")
    parser.add_argument("--replay", type=Path, metavar="FILE",
                        help="run the request of a reproducer file (in this process: a crash is not caught)")
    args = parser.parse_args(argv)
    offline.disable_telemetry()  # inherited from the pytest process; this covers a worker started by hand (--replay)
    system.disable_core_dumps()  # a crash is expected here; no core files
    system.disable_crash_dialogs()  # and on Windows no error dialog, which would keep a crashed worker alive
    faulthandler.enable()  # the Python stack of a crash goes to stderr, which the parent keeps
    system.register_stack_dump()  # and that of a hang, before the parent kills it (where the signal exists)
    protocol = _claim_stdout()
    try:
        runtime = load_runtime(args.runtime, args.model, args.ep)
    except Exception as exc:
        protocol.write(encode_line({"ready": False, "error": f"loading {args.runtime} on {args.model}: "
                                                       f"{type(exc).__name__}: {exc}"}))
        return 1
    protocol.write(encode_line({"ready": True, "pid": os.getpid(), "model": runtime.info.to_json(),
                                "raw": isinstance(runtime, RawRuntime)}))
    if args.replay is not None:
        request = json.loads(args.replay.read_text(encoding="utf-8"))["request"]
        protocol.write(encode_line(handle(runtime, request)))
        return 0
    serve(runtime, sys.stdin.buffer, protocol)
    runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
