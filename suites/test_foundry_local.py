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

from harness import (
    ComputePaths,
    Deployment,
    FoundryAnswer,
    FoundryLocalSession,
    FoundryUnavailable,
    Gates,
    HarnessError,
    Settle,
    control_tokens,
    foundry_chats,
    foundry_verdict,
    registered_model_ids,
    reserved_kv_cache,
)

CASES: list[dict[str, Any]] = foundry_chats()
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
    return foundry.answer_all(CASES, MAX_TOKENS)


@pytest.fixture(scope="module")
def forbidden_tokens(foundry: FoundryLocalSession) -> tuple[str, ...]:
    """The tokenizer's control tokens: never part of an answer."""
    return control_tokens(foundry.model_folder)


def test_kv_cache_reserved_for_each_chat_fits_the_gate(harness_deployment: Deployment, harness_gates: Gates,
                                                       record_property: Callable[[str, object], None]) -> None:
    """Foundry Local reserves the KV cache of the deployment's context length for every chat (the checks here register
    a copy capped to what their chats need, so that this costs the run nothing)."""
    reserved, failure = reserved_kv_cache(harness_deployment.folder, harness_gates)
    record_property("foundry_kv_cache_gib", round(reserved, 3))
    assert failure is None, failure


def test_registered_model_is_listed(foundry: FoundryLocalSession) -> None:
    listed = foundry.listed_models()
    assert foundry.model_id in listed, f"{foundry.model_id} is not in Foundry's cached models {listed}"
    assert registered_model_ids(foundry.cache_dir) == list(foundry.folders)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_foundry_answers_like_onnxruntime_genai(foundry: FoundryLocalSession,
                                                 foundry_answers: dict[tuple[str, str], Answer],
                                                 harness_paths: ComputePaths, forbidden_tokens: tuple[str, ...],
                                                 case: dict[str, Any], harness_verdict: Settle) -> None:
    harness_verdict(foundry_verdict(harness_paths, foundry, foundry_answers, case, MAX_TOKENS, forbidden_tokens))
