"""The Foundry Local PromptTemplate must render exactly what the model's chat template renders.

A wrong template is the most common way a deployment silently produces garbage: the model sees
control tokens it was never trained on, or never meets the token that ends its turn.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import (
    ENTRIES,
    PLACEHOLDER,
    Deployment,
    Profile,
    PromptTemplate,
    ReportFinding,
    Runtime,
    Settings,
    end_of_turn_token,
    entry_mismatch,
    injection_verdict,
    schema_errors,
    special_tokens,
)

pytestmark = pytest.mark.harness_chat  # skipped for a base model without a chat template

CONTENTS = {
    "plain": "What is the capital of France?",
    "empty": "",
    "newlines": "line one\nline two\n\nafter a blank line\n",
    "braces": "{x} {{y}} }{ {0} %s",
    "literal-placeholder": "keep {Content} as typed",
    "unicode": "naïve café — 日本語 — عربى — 🙂👍🏽",
    "surrounding-spaces": "   padded   ",
}


class InjectionWarning(UserWarning):
    """User text containing control tokens is parsed into real control tokens by the runtime."""


def _template(deployment: Deployment) -> PromptTemplate:
    template = deployment.template
    if template is None:
        pytest.fail(f"inference_model.json has no complete PromptTemplate: {schema_errors(deployment.document)}")
    return template


def _check_entry(runtime: Runtime, template: PromptTemplate, entry: str, content: str, config: Settings) -> None:
    mismatch = entry_mismatch(runtime.chat_prompt, template, entry, content, config.inference_config)
    assert mismatch is None, mismatch


def _renderable(deployment: Deployment, entry: str) -> PromptTemplate:
    """The template, if ``entry`` can be rendered; a bad placeholder has its own check."""
    template = _template(deployment)
    if getattr(template, entry).count(PLACEHOLDER) != 1:
        pytest.skip(f"'{entry}' has no single {PLACEHOLDER}: reported by test_placeholder_appears_once")
    return template


def test_inference_model_json_matches_the_schema(harness_deployment: Deployment) -> None:
    errors = schema_errors(harness_deployment.document)
    assert not errors, "inference_model.json does not match the schema:\n" + "\n".join(errors)


@pytest.mark.parametrize("entry", ENTRIES)
def test_placeholder_appears_once(harness_deployment: Deployment, entry: str) -> None:
    text = harness_deployment.document.get("PromptTemplate", {}).get(entry, "")
    assert text.count(PLACEHOLDER) == 1, (
        f"PromptTemplate '{entry}' must hold {PLACEHOLDER} exactly once, found "
        f"{text.count(PLACEHOLDER)} in {text!r}"
    )


@pytest.mark.parametrize("content", CONTENTS.values(), ids=CONTENTS.keys())
@pytest.mark.parametrize("entry", ENTRIES)
def test_entry_renders_like_the_chat_template(
    harness_runtime: Runtime, harness_deployment: Deployment, harness_settings: Settings, entry: str, content: str
) -> None:
    template = _renderable(harness_deployment, entry)
    _check_entry(harness_runtime, template, entry, content, harness_settings)


@pytest.mark.parametrize("entry", ENTRIES)
def test_entry_renders_like_the_chat_template_for_any_content(
    harness_runtime: Runtime, harness_deployment: Deployment, harness_profile: Profile, harness_settings: Settings,
    entry: str,
) -> None:
    template = _renderable(harness_deployment, entry)
    # Left to the malformed-input suite: surrogates (not UTF-8) and NUL, which onnxruntime-genai
    # 0.18's apply_chat_template treats as the end of the string (the rest of the prompt is lost).
    text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=80)

    @settings(max_examples=harness_profile.template_examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(content=text)
    def check(content: str) -> None:
        _check_entry(harness_runtime, template, entry, content, harness_settings)

    check()


def test_special_tokens_exist_and_encode_to_one_token(harness_runtime: Runtime, harness_deployment: Deployment) -> None:
    template = _template(harness_deployment)
    tokens = special_tokens("".join(template.as_json().values()))
    broken = {token: harness_runtime.encode(token) for token in tokens if len(harness_runtime.encode(token)) != 1}
    assert not broken, "control tokens of the PromptTemplate that are not single tokens of this " \
        "model's vocabulary (the model sees them as plain text): " + \
        ", ".join(f"{token!r} -> {ids}" for token, ids in broken.items())


def test_end_of_turn_token_is_an_eos_id(harness_runtime: Runtime, harness_deployment: Deployment) -> None:
    template = _template(harness_deployment)
    token = end_of_turn_token(template.assistant)
    assert token is not None, f"the assistant entry {template.assistant!r} has no end-of-turn token after {PLACEHOLDER}"
    ids = harness_runtime.encode(token)
    if len(ids) != 1:
        pytest.skip(f"{token!r} is not one token: reported by test_special_tokens_exist_and_encode_to_one_token")
    assert ids[0] in harness_runtime.info.eos_token_ids, (
        f"the end-of-turn token {token!r} (id {ids[0]}) is not among genai_config.json's eos ids "
        f"{list(harness_runtime.info.eos_token_ids)}: generation will not stop at the end of a turn"
    )


def test_max_length_fits_the_context(harness_runtime: Runtime, harness_deployment: Deployment) -> None:
    max_length = harness_deployment.document.get("ModelConfig", {}).get("max_length")
    assert isinstance(max_length, int), f"ModelConfig.max_length must be an integer, got {max_length!r}"
    assert max_length <= harness_runtime.info.context_length, (
        f"ModelConfig.max_length {max_length} is above the model's context_length "
        f"{harness_runtime.info.context_length}"
    )


def test_user_text_cannot_switch_roles(
    harness_runtime: Runtime,
    harness_settings: Settings,
    record_property: Callable[[str, object], None],
    harness_finding: ReportFinding,
) -> None:
    """Special-token injection: does a user typing the model's control tokens get real ones? The attack and the
    control tokens come from the chat template the runtime renders, never from inference_model.json: a wrong
    PromptTemplate (one whose tokens the vocabulary lacks) must not fake a safe verdict. A finding either way it
    goes: with --injection-policy=warn (the default) the check passes and reports it."""
    switches, verdict = injection_verdict(harness_runtime.chat_prompt, harness_runtime.encode)
    record_property("special_token_injection", verdict)
    if not switches:
        return
    harness_finding("special-token-injection", verdict)
    if harness_settings.injection_policy == "fail":
        pytest.fail(verdict, pytrace=False)
    warnings.warn(InjectionWarning(verdict), stacklevel=1)
