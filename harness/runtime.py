"""One wrapper over onnxruntime-genai used by every suite.

The suites talk to the ``Runtime`` protocol, so the plugin's own tests can swap in a fake and a
user can plug another runtime in through the ``pytest_harness_runtime_factory`` hook
(``harness.runtime_factory``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from harness.errors import ContextOverflow, EmptyInput, InvalidSearchOption, RuntimeFailure
from harness.offline import disable_telemetry

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


def read_chat_template(path: Path) -> str | None:
    """The model folder's chat template (chat_template.jinja, else tokenizer_config.json), or None: a base model."""
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    tokenizer_config = path / "tokenizer_config.json"
    if tokenizer_config.is_file():
        try:
            config = json.loads(tokenizer_config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RuntimeFailure(f"{tokenizer_config} is not valid JSON ({exc}); fix the file") from None
        template = config.get("chat_template") if isinstance(config, dict) else None
        if isinstance(template, str) and template.strip():
            return template
    return None


def read_model_info(path: Path) -> ModelInfo:
    config = json.loads((path / "genai_config.json").read_text(encoding="utf-8"))
    model = config["model"]
    eos = model.get("eos_token_id", [])
    return ModelInfo(
        path=path,
        model_type=str(model.get("type", "unknown")),
        context_length=int(model["context_length"]),
        eos_token_ids=tuple(eos if isinstance(eos, list) else [eos]),
        bos_token_id=model.get("bos_token_id"),
        vocab_size=int(model.get("vocab_size", 0)),
        chat_template=read_chat_template(path),
    )


def translate_error(exc: Exception, context: str) -> RuntimeFailure:
    """Map onnxruntime-genai's RuntimeError text onto the harness's exception types."""
    message = str(exc)
    lowered = message.lower()
    if "exceeds max length" in lowered:
        return ContextOverflow(f"{context}: prompt does not fit: {message}", message)
    if "input_ids is empty" in lowered:
        return EmptyInput(f"{context}: the prompt encodes to no tokens", message)
    if any(key in lowered for key in ("search option", "unknown option", "unknown value", "must be between",
                                      "must be 0 or greater", "expected a bool", "max_length")):
        return InvalidSearchOption(f"{context}: {message}", message)
    return RuntimeFailure(f"{context}: onnxruntime-genai error: {message}", message)


def top_two(logits: Any) -> tuple[int, float, int]:
    """From one row of logits: the best token, its lead over the runner-up (logit difference), the runner-up."""
    import numpy as np

    row = np.array(logits, dtype=np.float32).reshape(-1)  # a copy: finding the runner-up overwrites the best
    best = int(row.argmax())
    lead = row[best]
    row[best] = -np.inf
    runner_up = int(row.argmax())
    return best, float(lead - row[runner_up]), runner_up


def run_generator(generator: Any, prompt_ids: Sequence[int], max_new_tokens: int, read_margins: bool, info: ModelInfo,
                  decode: Callable[[Sequence[int]], str], context: str, started: float | None = None) -> Generation:
    """Prefill ``prompt_ids`` on a ready onnxruntime-genai generator, then take up to ``max_new_tokens``
    tokens, timing each from ``started`` (default: now).

    With ``read_margins`` (greedy decoding) each step's logits are read for the chosen token's margin: a copy of the
    row (27 us for 49,152 logits here) and a top-2 search (8 us).
    """
    tokens: list[int] = []
    times: list[float] = []
    margins: list[float] = []
    runner_ups: list[int] = []
    started = time.perf_counter() if started is None else started
    try:
        generator.append_tokens(list(prompt_ids))
        prefill = time.perf_counter() - started
        while not generator.is_done() and len(tokens) < max_new_tokens:
            if read_margins:
                _, margin, runner_up = top_two(generator.get_logits())
                margins.append(margin)
                runner_ups.append(runner_up)
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
            times.append(time.perf_counter() - started)
    except RuntimeError as exc:
        raise translate_error(exc, context) from exc
    stop: StopReason = "eos" if tokens and tokens[-1] in info.eos_token_ids else "length"
    return Generation(tuple(prompt_ids), tuple(tokens), decode(tokens), stop, prefill, tuple(times),
                      time.perf_counter() - started, tuple(margins), tuple(runner_ups))


class GenAIRuntime:
    """The real runtime: an ``onnxruntime_genai.Model`` loaded once and reused for every request. ``release()`` gives
    its memory back; the next request loads it again (the memory plan releases the session's model while a suite
    loads another copy it could not hold beside it)."""

    def __init__(self, path: Path, ep: str = "cpu") -> None:
        disable_telemetry()  # before onnxruntime-genai initializes, also where no pytest session did it first
        import onnxruntime_genai as og

        self._og = og
        self.info = read_model_info(path)
        self._path, self._ep = path, ep
        self._loaded: tuple[Any, Any] | None = None
        self._load()

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            og = self._og
            try:
                config = og.Config(str(self._path))
                if self._ep != "cpu":
                    config.clear_providers()
                    config.append_provider(self._ep)
                model = og.Model(config)
                self._loaded = (model, og.Tokenizer(model))
            except RuntimeError as exc:
                raise translate_error(exc, f"loading {self._path}") from exc
        return self._loaded

    @property
    def _model(self) -> Any:
        return self._load()[0]

    @property
    def _tokenizer(self) -> Any:
        return self._load()[1]

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def release(self) -> None:
        """Free the model (the next request loads it again)."""
        self._loaded = None

    # -- text <-> tokens -------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RuntimeFailure(f"the text is not valid Unicode ({exc.reason} at position {exc.start}); "
                                 "decode bytes with errors='replace' before sending them", str(exc)) from None
        return [int(t) for t in self._tokenizer.encode(text)]

    def decode(self, token_ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(token_ids)))

    def chat_prompt(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        try:
            return str(self._tokenizer.apply_chat_template(json.dumps(list(map(dict, messages))),
                                                           add_generation_prompt=add_generation_prompt))
        except RuntimeError as exc:
            raise translate_error(exc, "rendering the chat template") from exc

    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        text = prompt if isinstance(prompt, str) else self.chat_prompt(prompt)
        ids = self.encode(text)
        if not ids:
            raise EmptyInput("the prompt encodes to no tokens", "")
        if len(ids) >= self.info.context_length:
            raise ContextOverflow(
                f"the prompt has {len(ids)} tokens but the model's context is "
                f"{self.info.context_length}; shorten it by at least {len(ids) - self.info.context_length + 1}",
                "",
            )
        return ids

    # -- generation ------------------------------------------------------------------------
    def new_generator(self, prompt_ids: list[int], options: SearchOptions) -> Any:
        og = self._og
        if self.info.vocab_size and options.top_k > self.info.vocab_size:
            # Said before the generator exists (0.18 refuses it too; 0.14 aborted or segfaulted on it).
            raise InvalidSearchOption(
                f"invalid search option: top_k {options.top_k} is above the vocabulary "
                f"size {self.info.vocab_size}", "")
        max_length = min(len(prompt_ids) + options.max_new_tokens, self.info.context_length)
        params = og.GeneratorParams(self._model)
        try:
            params.set_search_options(
                max_length=max_length,
                min_length=len(prompt_ids) + options.min_new_tokens,
                do_sample=options.do_sample,
                temperature=options.temperature,
                top_p=options.top_p,
                top_k=options.top_k,
                repetition_penalty=options.repetition_penalty,
                **({} if options.seed is None else {"random_seed": options.seed}),
            )
            return og.Generator(self._model, params)
        except RuntimeError as exc:
            raise translate_error(exc, "setting search options") from exc

    def generate(self, prompt: Prompt, options: SearchOptions = DEFAULT_OPTIONS) -> Generation:
        prompt_ids = self._prompt_ids(prompt)
        started = time.perf_counter()  # the time to first token includes creating the generator
        generator = self.new_generator(prompt_ids, options)
        return run_generator(generator, prompt_ids, options.max_new_tokens, options.greedy_margins, self.info,
                             self.decode, "generating", started)

    def stream(self, prompt: Prompt, options: SearchOptions = DEFAULT_OPTIONS) -> Iterator[str]:
        """Yield text pieces as tokens arrive (decoded incrementally, so multi-byte chars stay whole)."""
        prompt_ids = self._prompt_ids(prompt)
        generator = self.new_generator(prompt_ids, options)
        decoder = self._tokenizer.create_stream()
        try:
            generator.append_tokens(prompt_ids)
            while not generator.is_done():
                generator.generate_next_token()
                piece = str(decoder.decode(int(generator.get_next_tokens()[0])))
                if piece:
                    yield piece
        except RuntimeError as exc:
            raise translate_error(exc, "generating") from exc

    def score(self, text: str) -> list[float]:
        import numpy as np

        ids = self.encode(text)
        if len(ids) < 2:
            return []
        logits = self.logits(ids[:-1]).astype(np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return [float(log_probs[i, ids[i + 1]]) for i in range(len(ids) - 1)]

    def logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.float32]:
        import numpy as np

        ids = [int(t) for t in token_ids]
        if not ids:
            raise EmptyInput("logits of an empty token sequence", "")
        if len(ids) >= self.info.context_length:  # no room for a next token (0.14 aborted, 0.18 refuses)
            raise ContextOverflow(f"{len(ids)} tokens do not fit the model's context of "
                                  f"{self.info.context_length} (one position stays free)", "")
        # onnxruntime-genai (0.14 and 0.18) runs the whole prefill in append_tokens; 'logits' holds every position.
        generator = self.new_generator(ids[:1], SearchOptions(max_new_tokens=len(ids)))
        try:
            generator.append_tokens(ids)
            return np.asarray(generator.get_output("logits"), dtype=np.float32).reshape(len(ids), -1)
        except RuntimeError as exc:
            raise translate_error(exc, "computing logits") from exc
        finally:
            del generator

    def reused_generator(self, options: SearchOptions, max_prompt_tokens: int) -> GenAIReusedGenerator:
        """One generator for many requests, rewound (rewind_to(0)) before each: its KV cache is allocated once."""
        return GenAIReusedGenerator(self, options, max_prompt_tokens)

    def close(self) -> None:
        self.release()


class GenAIReusedGenerator:
    """An ``onnxruntime_genai.Generator`` sized once for the longest request and rewound to position 0
    (``rewind_to(0)``, onnxruntime-genai >= 0.6) before each: the KV cache is allocated once.

    ``min_new_tokens`` is refused because the runtime's ``min_length`` counts from the start of the
    sequence, not from each prompt.
    """

    def __init__(self, runtime: GenAIRuntime, options: SearchOptions, max_prompt_tokens: int) -> None:
        if options.min_new_tokens:
            raise InvalidSearchOption("a reused generator cannot keep min_new_tokens per request; "
                                      "leave it at 0", "")
        self._runtime = runtime
        self.options = options
        self.max_length = min(max_prompt_tokens + options.max_new_tokens, runtime.info.context_length)
        # The runtime's own generator factory, for one token plus room for max_length - 1: same option
        # checks and error translation, and min_length 1 instead of a prompt's length.
        room = replace(options, max_new_tokens=self.max_length - 1)
        self._generator: Any = runtime.new_generator([runtime.info.bos_token_id or 0], room)

    def generate(self, prompt: Prompt) -> Generation:
        runtime, generator = self._runtime, self._generator
        ids = runtime.encode(prompt if isinstance(prompt, str) else runtime.chat_prompt(prompt))
        if not ids:
            raise EmptyInput("the prompt encodes to no tokens", "")
        if len(ids) + self.options.max_new_tokens > self.max_length:
            raise ContextOverflow(f"the reused generator holds {self.max_length} tokens; a {len(ids)}-token "
                                  f"prompt with {self.options.max_new_tokens} new tokens does not fit", "")
        try:
            generator.rewind_to(0)
        except RuntimeError as exc:
            raise translate_error(exc, "rewinding the reused generator") from exc
        return run_generator(generator, ids, self.options.max_new_tokens, self.options.greedy_margins, runtime.info,
                             runtime.decode, "generating with the reused generator")

    def close(self) -> None:
        self._generator = None
