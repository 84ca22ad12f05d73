"""Foundry Local judged against onnxruntime-genai: the same chat, the same greedy answer, on every compute path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.checks.stability import ComputePaths, PathJudgement, PathVerdict
from harness.deploy.foundry import TWIN_MODEL_ID, ChatAnswers, FoundryLocalSession, compare_answers
from harness.errors import HarnessError
from harness.runtime.protocol import SearchOptions


def foundry_verdict(paths: ComputePaths, session: FoundryLocalSession, answers: ChatAnswers, chat: Mapping[str, Any],
                    max_tokens: int, forbidden: Sequence[str]) -> PathVerdict:
    """Foundry's answer to ``chat`` judged on every compute path: it must end its turn, hold no ``forbidden`` (control)
    token and match onnxruntime-genai's greedy answer on the same path (the model, then its twin). An error Foundry
    answered with is raised."""
    # Foundry answers first (its models loaded one at a time, the session's model perhaps released), then the
    # session's model and its twin answer the same chats.
    messages = chat["messages"]
    judgements = []
    for path, model_id in zip(paths.paths, (session.model_id, TWIN_MODEL_ID), strict=False):
        direct = path.runtime.generate(messages, SearchOptions(max_new_tokens=max_tokens))
        answer = answers[model_id, chat["id"]]
        if isinstance(answer, HarnessError):
            raise answer
        problems = compare_answers(direct, answer, forbidden)
        detail = "; ".join(problems) + (
            f"\n  onnxruntime-genai ({direct.stop_reason}, {direct.output_tokens} tokens): {direct.text!r}"
            f"\n  Foundry Local ({answer.finish_reason}, {answer.completion_tokens} tokens): {answer.text!r}")
        judgements.append(PathJudgement(path.label, not problems, detail if problems else "", (direct,)))
    return PathVerdict(tuple(judgements))
