"""Runtimes with injected faults, for this project's own tests of crash isolation; never a verdict on a model.

Plug one in with ``pytest_harness_runtime_factory`` (returning ``fake_runtime``: no model needed, the
``harness.testing.fakes`` fake; or ``faulty_genai``: the real onnxruntime-genai runtime), or load it in the worker
with ``--runtime harness.testing.worker_fakes:fake_runtime``. Faults are chosen by environment variables, each a regular
expression searched in the request (the prompt as text or JSON, a space, then the options' repr):

  HARNESS_FAULT_SEGFAULT  read address 8 (SIGSEGV; an access violation, 0xC0000005, on Windows)
  HARNESS_FAULT_ABORT     os.abort() (SIGABRT; exit code 3 on Windows)
  HARNESS_FAULT_HANG      sleep far past any time limit
  HARNESS_FAULT_RAISE     raise a KeyError (an exception that is not a harness error)
  HARNESS_FAULT_CORRUPT   answer, then drop the first token of every later answer (corrupted state)
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.runtime.genai import RawGenAIRuntime
from harness.runtime.protocol import (
    DEFAULT_OPTIONS,
    Generation,
    Message,
    ModelInfo,
    Prompt,
    RawRuntime,
    Runtime,
    SearchOptions,
)
from harness.testing.fakes import FakeRuntime
from harness.worker.protocol import WorkerError

FAULTS = ("SEGFAULT", "ABORT", "HANG", "RAISE", "CORRUPT")


def _fault(subject: str) -> str | None:
    for fault in FAULTS:
        pattern = os.environ.get(f"HARNESS_FAULT_{fault}")
        if pattern and re.search(pattern, subject):
            return fault
    return None


def _read_the_null_page() -> None:
    """Crash the process: read address 8, in the unmapped first page, from ctypes' own pointer indexing. Not a foreign
    call such as ``ctypes.string_at(0)``: on Windows ctypes runs those under a structured exception handler, and the
    bad read raises OSError instead of crashing."""
    ctypes.cast(8, ctypes.POINTER(ctypes.c_char))[0]


class Faulty:
    """Wraps a runtime and misbehaves on requests that match a HARNESS_FAULT_* pattern."""

    def __init__(self, inner: Runtime) -> None:
        self.inner = inner
        self.info: ModelInfo = inner.info
        self.corrupted = False

    def encode(self, text: str) -> list[int]:
        return self.inner.encode(text)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.inner.decode(token_ids)

    def chat_prompt(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        return self.inner.chat_prompt(messages, add_generation_prompt)

    def stream(self, prompt: Prompt, options: SearchOptions = DEFAULT_OPTIONS) -> Iterator[str]:
        return self.inner.stream(prompt, options)

    def score(self, text: str) -> list[float]:
        return self.inner.score(text)

    def _trip(self, prompt: Prompt, options: object) -> None:
        shown = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)
        fault = _fault(f"{shown} {options!r}")
        if fault == "SEGFAULT":
            _read_the_null_page()
        elif fault == "ABORT":
            os.abort()
        elif fault == "HANG":
            time.sleep(3600)
        elif fault == "RAISE":
            raise KeyError("injected fault")
        elif fault == "CORRUPT":
            self.corrupted = True

    def _damaged(self, generation: Generation) -> Generation:
        if not self.corrupted or not generation.token_ids:
            return generation
        tokens = generation.token_ids[1:]
        return replace(generation, token_ids=tokens, text=self.decode(tokens), token_times=generation.token_times[1:])

    def generate(self, prompt: Prompt, options: SearchOptions = DEFAULT_OPTIONS) -> Generation:
        self._trip(prompt, options)
        return self._damaged(self.inner.generate(prompt, options))

    def generate_raw(self, prompt: Prompt, options: Mapping[str, Any], max_new_tokens: int) -> Generation:
        self._trip(prompt, options)
        if not isinstance(self.inner, RawRuntime):
            raise WorkerError(f"{type(self.inner).__name__} has no raw path (generate_raw)")
        return self._damaged(self.inner.generate_raw(prompt, options, max_new_tokens))

    def close(self) -> None:
        self.inner.close()


def fake_runtime(path: Path, ep: str) -> Faulty:
    """The ``harness.testing.fakes`` fake (characters are tokens) with faults: no model needed."""
    return Faulty(FakeRuntime(path))


def faulty_genai(path: Path, ep: str) -> Faulty:
    """The real onnxruntime-genai runtime with faults, to show isolation on the real model."""
    return Faulty(RawGenAIRuntime(path, ep))
