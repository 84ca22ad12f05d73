"""Seeded faults in the real runtime, to show that a check catches them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.runtime.genai import GenAIRuntime
from harness.runtime.protocol import DEFAULT_OPTIONS, Generation, Prompt, SearchOptions
from harness.system import KB


class SlowedRuntime(GenAIRuntime):
    """The real runtime with a fixed delay after each token: a seeded slow-down, to show that a
    regression gate catches it (``delay = 0.25 * TPOT`` lowers decode tokens/s by 20%). A delay per prompt
    token slows the prefill too."""

    def __init__(self, path: Path, delay_per_token_s: float, ep: str = "cpu",
                 delay_per_prompt_token_s: float = 0.0) -> None:
        super().__init__(path, ep)
        self.delay_per_token_s = delay_per_token_s
        self.delay_per_prompt_token_s = delay_per_prompt_token_s

    def new_generator(self, prompt_ids: list[int], options: SearchOptions) -> Any:
        return _SlowedGenerator(super().new_generator(prompt_ids, options), self.delay_per_token_s,
                                self.delay_per_prompt_token_s)


class _SlowedGenerator:
    """An onnxruntime-genai generator that sleeps after each token it generates (and each it prefills)."""

    def __init__(self, generator: Any, delay_s: float, delay_per_prompt_token_s: float) -> None:
        self._generator = generator
        self._delay_s = delay_s
        self._delay_per_prompt_token_s = delay_per_prompt_token_s

    def append_tokens(self, tokens: Any) -> None:
        self._generator.append_tokens(tokens)
        if self._delay_per_prompt_token_s:  # time.sleep(0) still yields the CPU: about 3% of a token here
            time.sleep(self._delay_per_prompt_token_s * len(tokens))

    def generate_next_token(self) -> None:
        self._generator.generate_next_token()
        if self._delay_s:
            time.sleep(self._delay_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._generator, name)


KEPT: list[bytes] = []  # what the seeded leaks hold on to


class LeakPerGeneration(GenAIRuntime):
    """The real runtime, keeping 64 KB after every generation."""

    def generate(self, prompt: Prompt, options: SearchOptions = DEFAULT_OPTIONS) -> Generation:
        KEPT.append(b"\x01" * (64 * KB))
        return super().generate(prompt, options)


class HoldsMemoryPerPromptToken(GenAIRuntime):
    """The real runtime, holding another 256 KB per prompt token while it generates (a copy of its
    cache that a runtime should not make)."""

    def generate(self, prompt: Prompt, options: SearchOptions = DEFAULT_OPTIONS) -> Generation:
        tokens = len(self.encode(prompt if isinstance(prompt, str) else self.chat_prompt(prompt)))
        scratch = b"\x01" * (tokens * 256 * KB)
        try:
            return super().generate(prompt, options)
        finally:
            del scratch
