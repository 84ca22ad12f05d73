"""Foundry Local on the real default model: the session cleans up, and the suite's check catches a defect."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from harness.deploy.foundry import FoundryLocalSession, FoundryUnavailable, compare_answers, registered_model_ids
from harness.deploy.templates import control_tokens
from harness.errors import RuntimeFailure
from harness.locations import suites_dir
from harness.runtime.genai import GenAIRuntime
from harness.runtime.protocol import SearchOptions
from tests.e2e.support import with_context

pytest.importorskip("foundry_local_sdk", reason="foundry-local-sdk is installed on Linux x86-64 only")

CAPITAL = [{"role": "user", "content": "Which city is the capital of Germany?"}]  # robust on every CPU
MAX_TOKENS = 96


class BodyFailed(Exception):
    pass


def suite_check(folder: Path, cache: Path) -> list[str]:
    """What the Foundry Local suite checks for one chat, on ``folder``: problems, or none."""
    direct_runtime = GenAIRuntime(folder)
    try:
        direct = direct_runtime.generate(CAPITAL, SearchOptions(max_new_tokens=MAX_TOKENS))
    finally:
        direct_runtime.close()
    with FoundryLocalSession(folder, cache) as foundry:
        foundry.load()
        return compare_answers(direct, foundry.chat(CAPITAL, MAX_TOKENS), control_tokens(folder))


def test_no_registration_is_left_behind_when_the_body_raises(built_path: Path, tmp_path: Path) -> None:
    with pytest.raises(BodyFailed), FoundryLocalSession(built_path, tmp_path) as foundry:
        foundry.load()
        assert registered_model_ids(tmp_path) == [foundry.model_id]
        raise BodyFailed
    assert registered_model_ids(tmp_path) == []
    with FoundryLocalSession(built_path, tmp_path) as again:  # the manager was closed: a new one starts
        assert again.listed_models() == [again.model_id]


def test_wrong_eos_in_a_copy_is_caught_by_the_suite_check(built_path: Path, tmp_path: Path) -> None:
    assert suite_check(built_path, tmp_path / "good-cache") == []
    defective = Path(shutil.copytree(built_path, tmp_path / "wrong-eos"))  # real copies: Foundry refuses symlinks
    config_file = defective / "genai_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["model"]["eos_token_id"] = 0  # <|endoftext|> instead of <|im_end|>: the turn never ends
    config_file.write_text(json.dumps(config), encoding="utf-8")
    problems = suite_check(defective, tmp_path / "bad-cache")
    assert any("finished by 'length' after 96 tokens" in problem for problem in problems), problems


def test_corrupt_genai_config_is_a_one_line_runtime_failure(built_path: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "genai_config.json").write_text('{"model": ', encoding="utf-8")
    with pytest.raises(RuntimeFailure) as caught, FoundryLocalSession(corrupt, tmp_path / "cache"):
        pass
    message = str(caught.value)
    assert message.startswith(f"Foundry Local: registering {corrupt}: "), message
    assert "failed to parse genai_config.json" in message and "\n" not in message, message
    assert registered_model_ids(tmp_path / "cache") == []
    with FoundryLocalSession(built_path, tmp_path / "cache") as again:  # the failed one closed its manager
        assert again.listed_models() == [again.model_id]


def test_missing_sdk_is_reported_as_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "foundry_local_sdk", None)  # what `import` does where it is not installed
    with pytest.raises(FoundryUnavailable, match=r"^Foundry Local is not available here: "), \
            FoundryLocalSession(tmp_path, tmp_path):
        pass


def test_a_128k_context_fails_the_kv_cache_gate_until_the_deployment_states_a_shorter_one(
        pytester: pytest.Pytester, built_path: Path) -> None:
    """Foundry Local reserves the KV cache of the deployed context for every chat: 5.6 GiB at 128k for this model's
    shape. The suite's own chats run on a capped copy (fast), the gate fails, and [tool.harness.model_config]
    max_length puts a shorter context into the deployment's genai_config.json."""
    long = with_context(built_path, pytester.path / "context-128k", 131072)
    suite = str(suites_dir() / "test_foundry_local.py")
    args = (f"--model={long}", f"--harness-reports={pytester.path / 'reports'}", "-p", "no:cacheprovider", suite)
    failed = pytester.runpytest(*args)
    failed.assert_outcomes(passed=9, failed=1)
    failed.stdout.fnmatch_lines(["*Foundry Local reserves 5.6 GiB of KV cache for each chat of this deployment: "
                                 "model.context_length 131072 in its genai_config.json x 45 KiB a token (30 layers *"])
    (pytester.path / "pyproject.toml").write_text("[tool.harness.model_config]\nmax_length = 8192\n", encoding="utf-8")
    passed = pytester.runpytest(*args, "-c", str(pytester.path / "pyproject.toml"))
    passed.assert_outcomes(passed=10)
    configs = [json.loads(path.read_text(encoding="utf-8")) for path in (pytester.path / "reports").glob(
        "*/foundry/models/custom/*/genai_config.json")]
    assert sorted(config["model"]["context_length"] for config in configs) == [8192, 131072]
