"""Foundry Local: the built model registers as a local model, loads, and answers exactly as onnxruntime-genai.

One Foundry Local session (in-process, offline, with its own model cache) serves the module; it
registers the deployment folder as is (and the fp32-compute twin's, when the model has one) and
leaves no registration behind. Each chat is judged on every compute path: Foundry's answer must end
its turn and match onnxruntime-genai's answer on the same path. Foundry holds one model at a time: it answers
every chat on the model, then on the twin, so the module never holds a fourth copy of the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from harness import ComputePaths, Deployment, Gates, HarnessError, PathJudgement, PathVerdict, SearchOptions, Settle
from harness.capacity.model_facts import model_facts
from harness.deploy.foundry import (
    TWIN_MODEL_ID,
    FoundryAnswer,
    FoundryLocalSession,
    FoundryUnavailable,
    compare_answers,
    registered_model_ids,
)
from harness.deploy.templates import control_tokens
from harness.locations import fixtures_dir

CASES: list[dict[str, Any]] = yaml.safe_load((fixtures_dir() / "foundry_prompts.yaml").read_text(encoding="utf-8"))
MAX_TOKENS = 96  # short answers end their turn well before this
CHAT_LENGTH = 1024  # the KV cache Foundry reserves for these chats (their prompts and answers hold a few hundred)
pytestmark = pytest.mark.harness_chat  # chats: skipped for a base model without a chat template


@pytest.fixture(scope="module")
def foundry(harness_deployment: Deployment, harness_twin_deployment: Deployment | None,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[FoundryLocalSession]:
    """The deployment folder (models/custom/<name>/ with inference_model.json), as it would ship."""
    cache = tmp_path_factory.mktemp("foundry-cache")
    twin = harness_twin_deployment.folder if harness_twin_deployment else None
    try:
        with FoundryLocalSession(harness_deployment.folder, cache, twin_folder=twin, max_length=CHAT_LENGTH) as session:
            yield session
    except FoundryUnavailable as exc:
        pytest.skip(str(exc))
    left = registered_model_ids(cache)  # fails the module's last test at teardown
    assert not left, f"Foundry Local kept registrations {left} in {cache} after the session closed"


Answer = FoundryAnswer | HarnessError  # what Foundry said to a chat, or why it could not answer


@pytest.fixture(scope="module")
def foundry_answers(foundry: FoundryLocalSession) -> dict[tuple[str, str], Answer]:
    """Every chat answered by each registered model, loaded one at a time: (model id, case id) -> answer."""
    answers: dict[tuple[str, str], Answer] = {}
    for model_id in foundry.folders:
        foundry.load(model_id)
        for case in CASES:
            try:
                answers[model_id, case["id"]] = foundry.chat(case["messages"], MAX_TOKENS, model_id)
            except HarnessError as exc:  # the check of that chat reports it
                answers[model_id, case["id"]] = exc
        foundry.unload(model_id)
    return answers


@pytest.fixture(scope="module")
def forbidden_tokens(foundry: FoundryLocalSession) -> tuple[str, ...]:
    """The tokenizer's control tokens: never part of an answer."""
    return control_tokens(foundry.model_folder)


def test_kv_cache_reserved_for_each_chat_fits_the_gate(harness_deployment: Deployment, harness_gates: Gates,
                                                       record_property: Callable[[str, object], None]) -> None:
    """Foundry Local reserves the KV cache of the deployment's context length for every chat (the checks here register
    a copy capped to what their chats need, so that this costs the run nothing)."""
    facts = model_facts(harness_deployment.folder)  # its genai_config.json, as Foundry reads it
    reserved = facts.context_length * facts.kv_bytes_per_token / 1024**3
    record_property("foundry_kv_cache_gib", round(reserved, 3))
    assert harness_gates.check("foundry_kv_cache_gib_max", reserved), (
        f"Foundry Local reserves {reserved:.1f} GiB of KV cache for each chat of this deployment: model.context_length "
        f"{facts.context_length} in its genai_config.json x {facts.kv_bytes_per_token / 1024:.0f} KiB a token "
        f"({facts.num_layers} layers of fp32 keys and values); {harness_gates.describe('foundry_kv_cache_gib_max')}. "
        "Set max_length in [tool.harness.model_config] (or the ModelConfig of your inference_model.json) to the "
        "longest conversation your app holds: the deployment's genai_config.json takes it")


def test_registered_model_is_listed(foundry: FoundryLocalSession) -> None:
    listed = foundry.listed_models()
    assert foundry.model_id in listed, f"{foundry.model_id} is not in Foundry's cached models {listed}"
    assert registered_model_ids(foundry.cache_dir) == list(foundry.folders)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_foundry_answers_like_onnxruntime_genai(foundry: FoundryLocalSession,
                                                 foundry_answers: dict[tuple[str, str], Answer],
                                                 harness_paths: ComputePaths, forbidden_tokens: tuple[str, ...],
                                                 case: dict[str, Any], harness_verdict: Settle) -> None:
    # Foundry answers first (its models loaded one at a time, the session's model perhaps released), then the
    # session's model and its twin answer the same chats.
    messages = case["messages"]
    judgements = []
    for path, model_id in zip(harness_paths.paths, (foundry.model_id, TWIN_MODEL_ID), strict=False):
        direct = path.runtime.generate(messages, SearchOptions(max_new_tokens=MAX_TOKENS))
        answer = foundry_answers[model_id, case["id"]]
        if isinstance(answer, HarnessError):
            raise answer
        problems = compare_answers(direct, answer, forbidden_tokens)
        detail = "; ".join(problems) + (
            f"\n  onnxruntime-genai ({direct.stop_reason}, {direct.output_tokens} tokens): {direct.text!r}"
            f"\n  Foundry Local ({answer.finish_reason}, {answer.completion_tokens} tokens): {answer.text!r}")
        judgements.append(PathJudgement(path.label, not problems, detail if problems else "", (direct,)))
    harness_verdict(PathVerdict(tuple(judgements)))
