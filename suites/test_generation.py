"""Basic generation contract: the built model loads, answers greedily, stops, and accounts for its tokens."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from harness.runtime import Generation, Runtime, SearchOptions

# Short questions any instruction-tuned model answers in a sentence and then ends its turn.
PROMPTS = {
    "capital": "What is the capital of France?",
    "greeting": "Say hello in one short sentence.",
}
OPTIONS = SearchOptions(max_new_tokens=96)


@pytest.fixture(scope="module")
def answer(runtime: Runtime) -> Callable[[str], Generation]:
    """Greedy answers, generated once per prompt for all the checks of this module."""
    return functools.cache(lambda prompt: runtime.generate([{"role": "user", "content": prompt}], OPTIONS))


@pytest.mark.parametrize("prompt", PROMPTS.values(), ids=PROMPTS.keys())
def test_greedy_answer_is_nonempty_and_ends_its_turn(
    runtime: Runtime, answer: Callable[[str], Generation], prompt: str
) -> None:
    result = answer(prompt)
    assert result.text.strip(), f"empty answer to {prompt!r}: tokens {list(result.token_ids)}"
    assert result.stop_reason == "eos", (
        f"no end-of-turn token within {OPTIONS.max_new_tokens} tokens (eos ids "
        f"{list(runtime.info.eos_token_ids)}); answer: {result.text[:200]!r}"
    )


@pytest.mark.parametrize("prompt", PROMPTS.values(), ids=PROMPTS.keys())
def test_token_accounting_is_consistent(runtime: Runtime, answer: Callable[[str], Generation], prompt: str) -> None:
    result = answer(prompt)
    assert 1 <= result.output_tokens <= OPTIONS.max_new_tokens
    assert len(result.token_times) == result.output_tokens
    ended_on_eos = result.token_ids[-1] in runtime.info.eos_token_ids
    assert (result.stop_reason == "eos") == ended_on_eos, (
        f"stop reason {result.stop_reason!r} but last token {result.token_ids[-1]} "
        f"{'is' if ended_on_eos else 'is not'} an eos id {list(runtime.info.eos_token_ids)}"
    )
    eos_inside = [t for t in result.token_ids[:-1] if t in runtime.info.eos_token_ids]
    assert not eos_inside, f"generation went on past eos tokens {eos_inside}"
