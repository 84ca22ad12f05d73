"""Fakes for testing the plugin's own logic (and hooks users write) without building a model.

They are wired in through the plugin's hooks from a conftest: ``FAKES_CONFTEST`` is that conftest (the fake builder
and the fake runtime), for a test to write as it is or after lines of its own.

Never a substitute for the end-to-end path: the project's own e2e tests use the real model.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BuildError, ContextOverflow
from harness.fsutil import link_or_copy
from harness.preparation.buildlog import Progress
from harness.runtime.genai import read_model_info
from harness.runtime.protocol import DEFAULT_OPTIONS, Generation, Message, ModelInfo, Prompt, SearchOptions, StopReason

FAKES_CONFTEST = """
from harness.testing.fakes import FakeBuilder, FakeRuntime

def make_builder(settings):
    return FakeBuilder()

def pytest_harness_builders(config):
    return {"model-builder": make_builder}

def make_runtime(path, ep):
    return FakeRuntime(path)

def pytest_harness_runtime_factory(config):
    return make_runtime
"""
EOS = 2
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def write_hf_folder(path: Path) -> Path:
    """A tiny folder that source detection accepts as a Hugging Face model: a config and one 16-parameter tensor."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({
        "model_type": "llama", "eos_token_id": EOS, "hidden_size": 4, "num_hidden_layers": 1, "num_attention_heads": 1,
        "vocab_size": 256, "max_position_embeddings": 256}), encoding="utf-8")
    header = json.dumps({"embed.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
    (path / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(64))
    (path / "tokenizer.json").write_text("{}", encoding="utf-8")
    return path


def write_genai_folder(path: Path, context_length: int = 256, eos: int = EOS,
                       accuracy_level: int | None = None) -> Path:
    """A folder that looks like an onnxruntime-genai model (config, template, ONNX graph). The graph is
    empty, or with ``accuracy_level`` one int4 MatMulNBits node at that level (and a weights file), so the
    harness derives an fp32-compute twin from it as from a real int4 model."""
    path.mkdir(parents=True, exist_ok=True)
    config = {"model": {"type": "llama", "context_length": context_length, "eos_token_id": eos,
                        "bos_token_id": 1, "vocab_size": 256,
                        "decoder": {"filename": "model.onnx"}}}
    (path / "genai_config.json").write_text(json.dumps(config), encoding="utf-8")
    if accuracy_level is None:
        (path / "model.onnx").write_bytes(b"")
    else:
        write_matmul_nbits_graph(path / "model.onnx", accuracy_level)
        (path / "model.onnx.data").write_bytes(b"\0" * 4096)  # stands in for the weights the twin shares
    (path / "chat_template.jinja").write_text(CHATML, encoding="utf-8")
    return path


def write_matmul_nbits_graph(path: Path, accuracy_level: int) -> None:
    """A one-node ONNX graph: an int4 MatMulNBits at ``accuracy_level`` (enough for the harness to read it)."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("MatMulNBits", ["A", "B", "scales"], ["Y"], domain="com.microsoft", K=32, N=8, bits=4,
                            block_size=32, accuracy_level=accuracy_level)
    graph = helper.make_graph(
        [node], "fake", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 8])],
        initializer=[helper.make_tensor("B", TensorProto.UINT8, [8, 1, 16], bytes(128), raw=True),
                     helper.make_tensor("scales", TensorProto.FLOAT, [8], [1.0] * 8)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                      helper.make_opsetid("com.microsoft", 1)]), str(path))


def clone_model(source: Path, target: Path, genai_config: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A copy of a model folder to seed defects in: weights hard-linked (never symlinked: Foundry
    Local rejects that), small files copied so editing them cannot touch the original."""
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_file() and not item.name.startswith("."):
            if item.stat().st_size > 1 << 20:
                link_or_copy(item, target / item.name)
            else:
                shutil.copy2(item, target / item.name)
    if genai_config is not None:
        path = target / "genai_config.json"
        config = json.loads(path.read_text(encoding="utf-8"))
        genai_config(config)
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return target


@dataclass
class FakeBuilder:
    """Writes a fake model folder; counts its builds in ``counter`` and can be slowed or broken."""

    name: str = "fake"
    counter: Path | None = None
    delay_s: float = 0.0
    error: str | None = None
    context_length: int = 256
    accuracy_level: int | None = None  # write an int4 MatMulNBits graph at this level (see write_genai_folder)

    def options(self) -> dict[str, str]:
        return {"fake": "1"}

    def describe(self) -> str:
        return "the fake builder of harness.testing.fakes"

    def build(self, hf_folder: Path, out: Path, precision: str, ep: str, work: Path, log: Path,
              progress: Progress) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"fake build of {hf_folder} at {precision}\n{self.error or 'ok'}\n", encoding="utf-8")
        if self.counter is not None:
            with self.counter.open("a", encoding="utf-8") as handle:
                handle.write(f"{precision}\n")
        (out / "partial.onnx.data").write_bytes(b"half")
        time.sleep(self.delay_s)
        if self.error:
            raise BuildError(f"fake build failed: {self.error}; full log: {log}", log)
        write_genai_folder(out, self.context_length, accuracy_level=self.accuracy_level)


# Memory the fakes "leak": kept here so it outlives the runtime that allocated it, as a native leak does.
_RETAINED: list[bytes] = []


def _retain(size: int) -> None:
    if size > 0:
        _RETAINED.append(b"\x01" * size)  # written, so the pages count in RSS


class SeededClock:
    """The times a fake reports when a test judges them: each pause lasts its nominal length times a factor drawn
    from [1 - noise, 1 + noise] by a seeded generator, a host's scatter that is the same in every run. The fake
    still sleeps until the time it reports, so the wall clock agrees with it; but a busy host, whose sleeps
    overshoot by a varying amount, no longer moves the verdict (``tests/plugin/test_ab.py``)."""

    def __init__(self, seed: int, noise: float = 0.03) -> None:
        self.noise = noise
        self._draw = random.Random(seed)

    def pause(self, seconds: float) -> float:
        """The reported length of a pause of ``seconds``."""
        return seconds * (1 + self._draw.uniform(-self.noise, self.noise))


class _Stopwatch:
    """One generation's clock: the host's (sleep, then read the time), or a seeded one (add the drawn length,
    then sleep until the reported time has passed)."""

    def __init__(self, clock: SeededClock | None) -> None:
        self.clock = clock
        self.started = time.perf_counter()
        self.reported = 0.0

    def pause(self, seconds: float) -> None:
        if self.clock is None:
            time.sleep(seconds)
            return
        self.reported += self.clock.pause(seconds)
        time.sleep(max(0.0, self.started + self.reported - time.perf_counter()))

    def elapsed(self) -> float:
        return time.perf_counter() - self.started if self.clock is None else self.reported


@dataclass
class FakeRuntime:
    """A deterministic runtime: characters are tokens, answers come from ``answer(prompt)``.

    Seed defects with the flags: ``never_stops`` (no eos, runs to the limit), ``delay_per_token_s`` (timed by
    the host's clock, or reported from a ``SeededClock`` when a test judges timings);
    memory: ``leak_bytes_per_call`` (kept by every generation, until ``leak_stops_after`` calls when
    set: an arena-like plateau), ``leak_bytes_per_load``; lengths: ``prefill_time(prompt_tokens)``
    and ``token_time(context_tokens)`` in seconds, ``enforce_context`` (refuse a prompt that does
    not fit, as GenAIRuntime does); ``reuse_carries_state`` (the reused generator keeps earlier
    prompts, as one never rewound would). Greedy answers carry ``margin(position)`` as each token's
    lead over its runner-up (the next character). Two compute paths that part at a chosen token are
    two fakes whose ``answer`` differs there (see ``tests/plugin/test_stability.py``).
    """

    path: Path
    answer: Callable[[str], str] = lambda prompt: "The capital of France is Paris."
    never_stops: bool = False
    delay_per_token_s: float = 0.0
    leak_bytes_per_call: int = 0
    leak_stops_after: int | None = None
    leak_bytes_per_load: int = 0
    prefill_time: Callable[[int], float] | None = None
    token_time: Callable[[int], float] | None = None
    enforce_context: bool = False
    reuse_carries_state: bool = False
    margin: Callable[[int], float] = lambda position: 5.0
    clock: SeededClock | None = None
    info: ModelInfo = field(init=False)
    closed: bool = field(default=False, init=False)
    calls: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.info = read_model_info(self.path)
        _retain(self.leak_bytes_per_load)

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 250 + 3 for c in text]

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(t) for t in token_ids if t != EOS)

    def chat_prompt(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        rendered = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return rendered + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def generate(self, prompt: Prompt, options: SearchOptions = DEFAULT_OPTIONS) -> Generation:
        text = prompt if isinstance(prompt, str) else self.chat_prompt(prompt)
        prompt_ids = self.encode(text)
        if self.enforce_context and len(prompt_ids) >= self.info.context_length:
            raise ContextOverflow(f"the prompt has {len(prompt_ids)} tokens but the model's context is "
                                  f"{self.info.context_length}", "")
        self.calls += 1
        if self.leak_stops_after is None or self.calls <= self.leak_stops_after:
            _retain(self.leak_bytes_per_call)
        watch = _Stopwatch(self.clock)
        prefill = 0.0  # not measured unless prefill_time is set
        if self.prefill_time is not None:
            watch.pause(self.prefill_time(len(prompt_ids)))
            prefill = watch.elapsed()
        answer = self.answer(text) * (100 if self.never_stops else 1)
        tokens = [ord(c) for c in answer][: options.max_new_tokens]
        if not self.never_stops and len(tokens) < options.max_new_tokens:
            tokens.append(EOS)
        times = []
        for i, _ in enumerate(tokens):
            watch.pause(self.delay_per_token_s + (self.token_time(len(prompt_ids) + i) if self.token_time else 0.0))
            times.append(watch.elapsed())
        stop: StopReason = "eos" if tokens and tokens[-1] == EOS else "length"
        total = watch.elapsed()
        margins = tuple(self.margin(i) for i in range(len(tokens))) if options.greedy_margins else ()
        runner_ups = tuple(t + 1 for t in tokens) if options.greedy_margins else ()
        return Generation(tuple(prompt_ids), tuple(tokens), self.decode(tokens), stop,
                          prefill, tuple(times), total, margins, runner_ups)

    def reused_generator(self, options: SearchOptions, max_prompt_tokens: int) -> FakeReusedGenerator:
        """One generator for many requests (see ``harness.checks.memory.open_reused_generator``)."""
        return FakeReusedGenerator(self, options)

    def stream(self, prompt: Prompt, options: SearchOptions = DEFAULT_OPTIONS) -> Iterator[str]:
        yield from self.generate(prompt, options).text

    def score(self, text: str) -> list[float]:
        return [-1.0] * max(len(text) - 1, 0)

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeReusedGenerator:
    """The fake's long-lived generator: answers like ``generate``, or with the previous request's
    prompt in front when the runtime's ``reuse_carries_state`` seeds that defect."""

    runtime: FakeRuntime
    options: SearchOptions
    previous: str = ""

    def generate(self, prompt: Prompt) -> Generation:
        text = prompt if isinstance(prompt, str) else self.runtime.chat_prompt(prompt)
        if self.runtime.reuse_carries_state:
            self.previous, text = text, self.previous + text
        return self.runtime.generate(text, self.options)

    def close(self) -> None:
        self.previous = ""


class SteadyYardstick:
    """The machine yardstick for the fakes: they sleep rather than compute, so the machine's speed does not move
    them, nor does it this (a real yardstick would add the machine's noise to their comparisons)."""

    def seconds(self) -> float:
        return 0.01
