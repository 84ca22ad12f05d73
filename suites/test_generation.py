"""Basic generation contract: the built model loads, answers greedily, and accounts for its tokens."""

from __future__ import annotations

import pytest

from harness.runtime import Runtime, SearchOptions

PROMPTS = {
    "capital": "What is the capital of France?",
    "greeting": "Say hello in one short sentence.",
}


@pytest.mark.parametrize("prompt", PROMPTS.values(), ids=PROMPTS.keys())
def test_greedy_answer_is_nonempty_and_consistent(runtime: Runtime, prompt: str) -> None:
    options = SearchOptions(max_new_tokens=64)
    result = runtime.generate([{"role": "user", "content": prompt}], options)
    assert result.text.strip(), f"empty answer to {prompt!r}: tokens {list(result.token_ids)}"
    assert 1 <= result.output_tokens <= options.max_new_tokens
    assert len(result.token_times) == result.output_tokens
    ended_on_eos = result.token_ids[-1] in runtime.info.eos_token_ids
    assert (result.stop_reason == "eos") == ended_on_eos
    assert result.stop_reason == "eos" or result.output_tokens == options.max_new_tokens, (
        f"stopped after {result.output_tokens} tokens without an eos token"
    )
