"""Basic generation contract: the built model loads, answers greedily, stops, and accounts for its tokens.

Each answer is judged on every compute path (see ``harness.checks.stability``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from harness import (
    ComputePaths,
    Generation,
    ModelInfo,
    PathJudgement,
    PathVerdict,
    RecordAnswer,
    SearchOptions,
    Settle,
    token_problems,
)

# Short questions any instruction-tuned model answers in a sentence and then ends its turn. Chosen so
# that every decision of the default model's answer leads its runner-up by a wide margin on both
# compute paths (see the README, "Verdicts that hold on every CPU").
PROMPTS = {
    "capital": "What is the capital city of Germany?",
    "planet": "Which planet is the largest in our solar system?",
}
OPTIONS = SearchOptions(max_new_tokens=96)
pytestmark = pytest.mark.harness_chat  # chats: skipped for a base model without a chat template


@pytest.fixture(scope="module")
def answer(harness_paths: ComputePaths) -> Callable[[str], tuple[Generation, ...]]:
    """Greedy answers on each compute path, generated once per prompt for all the checks of this module."""
    return functools.cache(lambda prompt: harness_paths.generate(_chat(prompt), OPTIONS))


def _ends_its_turn(prompt: str, result: Generation, info: ModelInfo) -> str:
    if not result.text.strip():
        return f"empty answer to {prompt!r}: tokens {list(result.token_ids)}"
    if result.stop_reason != "eos":
        return (f"no end-of-turn token within {OPTIONS.max_new_tokens} tokens (eos ids {list(info.eos_token_ids)}) "
                f"in the answer to {prompt!r}: {result.text[:200]!r}")
    return ""


def _token_accounting(result: Generation, info: ModelInfo) -> str:
    problems = token_problems(result.token_ids, result.stop_reason, info.eos_token_ids, OPTIONS.max_new_tokens)
    if len(result.token_times) != result.output_tokens:
        problems.append(f"{len(result.token_times)} token times for {result.output_tokens} tokens")
    return "; ".join(problems)


def _chat(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def _verdict(paths: ComputePaths, answers: tuple[Generation, ...], check: Callable[[Generation], str]) -> PathVerdict:
    judgements = []
    for path, result in zip(paths.paths, answers, strict=True):
        problem = check(result)
        judgements.append(PathJudgement(path.label, not problem, problem, (result,)))
    return PathVerdict(tuple(judgements))


@pytest.mark.parametrize("prompt", PROMPTS.values(), ids=PROMPTS.keys())
def test_greedy_answer_is_nonempty_and_ends_its_turn(
    harness_paths: ComputePaths, answer: Callable[[str], tuple[Generation, ...]], prompt: str,
    harness_verdict: Settle, harness_answer: RecordAnswer,
) -> None:
    info = harness_paths.primary.info
    harness_answer(_chat(prompt), answer(prompt)[0])
    harness_verdict(_verdict(harness_paths, answer(prompt), lambda result: _ends_its_turn(prompt, result, info)))


@pytest.mark.parametrize("prompt", PROMPTS.values(), ids=PROMPTS.keys())
def test_token_accounting_is_consistent(harness_paths: ComputePaths, answer: Callable[[str], tuple[Generation, ...]],
                                        prompt: str, harness_verdict: Settle, harness_answer: RecordAnswer) -> None:
    info = harness_paths.primary.info
    harness_answer(_chat(prompt), answer(prompt)[0])
    harness_verdict(_verdict(harness_paths, answer(prompt), lambda result: _token_accounting(result, info)))
