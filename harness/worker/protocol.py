"""The worker's protocol, shared by the child (``harness.worker.child``) and the parent (``harness.worker.client``).

The worker loads the model once and answers one JSON line per request on its stdin, so that a native crash
or a hang fails one request, not the pytest session. Requests are JSON objects (ASCII: ``json.dumps`` escapes
lone surrogates as ``\\udXXX`` and reads them back unchanged, so text that is not valid UTF-8 crosses the
pipe intact)::

    {"id": 1, "prompt": {"text": "..."}, "options": {"max_new_tokens": 8}}
    {"id": 2, "prompt": {"messages": [{"role": "user", "content": "..."}]}, "raw": {"top_k": -1},
     "max_new_tokens": 8}
    {"id": 3, "prompt": {"fill": " the", "context_offset": 1}, "options": {}}

``options`` go through the harness's ``SearchOptions`` (its own validation); ``raw`` goes straight to the
engine (onnxruntime-genai's ``set_search_options``), so the runtime's own checks are exercised. A ``fill``
prompt repeats a unit up to an exact token count (``tokens``, or the context length plus ``context_offset``); a
``past_context`` prompt (``{"past_context": "x"}``) repeats its unit until the text encodes past the context.
The worker first sends a ready line (pid, the model's ``ModelInfo`` as JSON, whether it has a raw path).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from harness.errors import HarnessError

DEFAULT_RUNTIME = "harness.runtime.genai:RawGenAIRuntime"
LOAD_TIMEOUT_S = 300.0  # model load; a 135M model loads in about 1 s here, a 7B one can take minutes
STDERR_TAIL = 4000  # characters of the worker's stderr kept with a crash or a hang

Kind = Literal["answered", "rejected", "crashed", "hung"]
KINDS: tuple[Kind, ...] = ("answered", "rejected", "crashed", "hung")


class WorkerError(HarnessError):
    """The worker could not be started or broke the protocol (not a verdict on the model)."""


def encode_line(message: Mapping[str, Any]) -> bytes:
    """One protocol message: a line of ASCII JSON."""
    return (json.dumps(message, ensure_ascii=True) + "\n").encode("ascii")
