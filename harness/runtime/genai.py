"""The onnxruntime-genai runtime: the engine behind every suite (``GenAIRuntime``), its raw path for the robustness
worker (``RawGenAIRuntime``), and the readers of a model folder's genai_config.json and chat template."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ContextOverflow, EmptyInput, InvalidSearchOption, RuntimeFailure
from harness.offline import disable_telemetry

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

from harness.runtime.protocol import DEFAULT_OPTIONS, Generation, Message, ModelInfo, Prompt, SearchOptions, StopReason


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
