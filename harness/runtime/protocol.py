"""The runtime protocol family the suites talk to: what a runtime does (``Runtime``, ``LogitsRuntime``,
``ReusingRuntime``, ``ReleasableRuntime``, ``RawRuntime``) and the values it takes and returns (``Prompt``,
``SearchOptions``, ``Generation``, ``ModelInfo``).

The plugin's own tests swap in a fake, and a user plugs another runtime in through the
``pytest_harness_runtime_factory`` hook (``harness.runtime.factory``); ``harness.runtime.genai`` is the
onnxruntime-genai implementation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from harness.errors import InvalidSearchOption

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

Message = Mapping[str, str]
Prompt = str | Sequence[Message]
StopReason = Literal["eos", "length"]


@dataclass(frozen=True)
class SearchOptions:
    max_new_tokens: int = 128
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0
    seed: int | None = None  # random seed for sampling; None: the runtime's own (not reproducible)
    # Greedy only: read each step's logits for its margin over the runner-up (what verdicts over compute paths
    # need). Timing rounds turn it off: the read costs about 35 us a token, 0.5% of a decode step here.
    margins: bool = True

    @property
    def greedy_margins(self) -> bool:
        """Whether a generation with these options records its margins."""
        return self.margins and not self.do_sample

    def __post_init__(self) -> None:
        checks = (
            (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1, "max_new_tokens must be an int >= 1"),
            (isinstance(self.min_new_tokens, int) and isinstance(self.max_new_tokens, int)
             and 0 <= self.min_new_tokens <= self.max_new_tokens,
             "min_new_tokens must be an int between 0 and max_new_tokens"),
            (isinstance(self.do_sample, bool), "do_sample must be a bool"),
            (isinstance(self.margins, bool), "margins must be a bool"),
            # onnxruntime-genai 0.18 answers greedily or with garbage on subnormal temperatures / penalties
            # (0.14.1 aborted the process): refused here, with the reason.
            (finite_number(self.temperature) and self.temperature >= 1e-3,
             "temperature must be a finite number >= 0.001"),
            (finite_number(self.top_p) and 0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (isinstance(self.top_k, int) and self.top_k >= 0, "top_k must be an int >= 0"),
            (finite_number(self.repetition_penalty) and self.repetition_penalty >= 1e-3,
             "repetition_penalty must be a finite number >= 0.001"),
            (self.seed is None or (isinstance(self.seed, int) and not isinstance(self.seed, bool)
                                   and 0 <= self.seed < 2**31), "seed must be an int in [0, 2**31)"),
        )
        for ok, message in checks:
            if not ok:
                raise InvalidSearchOption(f"invalid search option: {message} (got {self})")


def finite_number(value: object) -> bool:
    """An int or float that is not a bool, NaN or infinite."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float (10**400)
        return False


DEFAULT_OPTIONS = SearchOptions()


@dataclass(frozen=True)
class Generation:
    prompt_token_ids: tuple[int, ...]
    token_ids: tuple[int, ...]  # generated tokens, including the eos token when there is one
    text: str  # decoded output, special tokens skipped
    stop_reason: StopReason
    prefill_seconds: float  # time to process the prompt
    token_times: tuple[float, ...]  # seconds from request start until each output token was ready
    total_seconds: float
    # Greedy answers only: for each output token, how far its logit led the runner-up's, and the
    # runner-up's id. A small margin is a near-tie that another CPU's kernels may decide otherwise.
    margins: tuple[float, ...] = ()
    runner_up_ids: tuple[int, ...] = ()

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def output_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def ttft(self) -> float:
        """Time to first token (request start to first output token)."""
        return self.token_times[0] if self.token_times else self.total_seconds

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first: (latency - TTFT) / (output tokens - 1)."""
        if self.output_tokens < 2:
            return None
        return (self.total_seconds - self.ttft) / (self.output_tokens - 1)


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    model_type: str
    context_length: int
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None
    vocab_size: int
    chat_template: str | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values (the model worker sends them in its ready line)."""
        return {**asdict(self), "path": str(self.path), "eos_token_ids": list(self.eos_token_ids)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelInfo:
        """The inverse of ``to_json``."""
        return cls(**{**data, "path": Path(data["path"]), "eos_token_ids": tuple(data["eos_token_ids"])})


class Runtime(Protocol):
    info: ModelInfo

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def chat_prompt(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """The messages rendered through the model's chat template (by the runtime itself)."""
        ...

    def generate(self, prompt: Prompt, options: SearchOptions = DEFAULT_OPTIONS) -> Generation: ...

    def stream(self, prompt: Prompt, options: SearchOptions = DEFAULT_OPTIONS) -> Iterator[str]: ...

    def score(self, text: str) -> list[float]:
        """Log-probability of each token of ``text`` given the tokens before it (first excluded)."""
        ...

    def close(self) -> None: ...


# Capabilities beyond ``Runtime``: a check that needs one tests for it with ``isinstance`` and skips in one
# line without it. GenAIRuntime has the first two; the robustness worker's runtime has the raw path.
@runtime_checkable
class LogitsRuntime(Runtime, Protocol):
    """A runtime that returns next-token logits (the parity suite compares their distributions)."""

    def logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """Next-token logits at every position, shape [len(token_ids), vocab]: row i predicts token i + 1."""
        ...


class ReusedGenerator(Protocol):
    """One generator kept for many requests, rewound before each."""

    def generate(self, prompt: Prompt) -> Generation: ...

    def close(self) -> None: ...



def rendered_prompt(runtime: Runtime, prompt: Prompt) -> str:
    """What the model reads: a raw prompt as it is, chat messages through the model's chat template (its default
    system prompt included)."""
    return prompt if isinstance(prompt, str) else runtime.chat_prompt(prompt)

@runtime_checkable
class ReusingRuntime(Runtime, Protocol):
    """A runtime that can keep one generator for many requests (the memory suite's long-lived generator)."""

    def reused_generator(self, options: SearchOptions, max_prompt_tokens: int) -> ReusedGenerator: ...


@runtime_checkable
class ReleasableRuntime(Runtime, Protocol):
    """A runtime that can free its model between requests and load it again on the next (the memory plan releases
    the session's model while a suite loads another copy it could not hold beside it)."""

    loaded: bool

    def release(self) -> None: ...


@runtime_checkable
class RawRuntime(Runtime, Protocol):
    """A runtime with a raw path: settings straight to the engine, unchecked by the harness (the robustness
    suite's raw-settings cases skip without it)."""

    def generate_raw(self, prompt: Prompt, options: Mapping[str, Any], max_new_tokens: int) -> Generation: ...
