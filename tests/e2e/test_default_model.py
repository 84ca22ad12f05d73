"""End to end on the real default model: real conversion, real Olive int4 build, real onnxruntime-genai.

The build is shared with the suites through the cache (HARNESS_CACHE_DIR), so it happens once.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import ContextOverflow, EmptyInput, InvalidSearchOption
from harness.runtime.genai import GenAIRuntime
from harness.runtime.protocol import SearchOptions
from harness.session import HarnessSession
from tests.e2e.support import ROOT, open_session

CAPITAL = [{"role": "user", "content": "Which city is the capital of Germany?"}]  # robust on every CPU


@pytest.fixture(scope="session")
def model(built: HarnessSession) -> Iterator[GenAIRuntime]:
    assert built.prepared is not None
    runtime = GenAIRuntime(built.prepared.path)
    yield runtime
    runtime.close()


def test_default_model_is_built_at_int4_with_the_model_builder(built: HarnessSession) -> None:
    assert built.prepared is not None
    assert built.source.is_default and built.plan.precision == "int4" and built.plan.builder == "model-builder"
    assert built.builder.options()["builder_version"] == "0.18.0"  # the engine Foundry Local deploys on
    files = {p.name for p in built.prepared.path.iterdir()}
    assert {"genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json"} <= files


def test_second_session_finds_the_cache(built: HarnessSession, tmp_path: Path) -> None:
    again = open_session(tmp_path)
    assert again.cache_hit_at_start
    assert again.plan.key == built.plan.key


def test_greedy_answer_names_berlin(model: GenAIRuntime) -> None:
    result = model.generate(CAPITAL, SearchOptions(max_new_tokens=48))
    assert "Berlin" in result.text, result.text
    assert result.stop_reason == "eos"
    assert result.prompt_tokens == 38  # ChatML with SmolLM2's default system prompt
    assert 0 < result.ttft < result.total_seconds


def test_timing_rounds_read_no_margins_and_answer_the_same(model: GenAIRuntime) -> None:
    """``margins=False`` (the benchmarks' rounds) skips the logits read, not the answer."""
    with_margins = model.generate(CAPITAL, SearchOptions(max_new_tokens=48))
    without = model.generate(CAPITAL, SearchOptions(max_new_tokens=48, margins=False))
    assert len(with_margins.margins) == with_margins.output_tokens and without.margins == ()
    assert without.token_ids == with_margins.token_ids


def test_generation_is_deterministic_and_streams_the_same_text(model: GenAIRuntime) -> None:
    options = SearchOptions(max_new_tokens=48)
    first, second = model.generate(CAPITAL, options), model.generate(CAPITAL, options)
    assert first.token_ids == second.token_ids
    assert "".join(model.stream(CAPITAL, options)) == first.text


def test_score_gives_one_log_probability_per_predicted_token(model: GenAIRuntime) -> None:
    text = "The capital of France is Paris. The capital of Germany is Berlin."
    scores = model.score(text)
    assert len(scores) == len(model.encode(text)) - 1
    assert all(math.isfinite(s) and s <= 0 for s in scores)
    # A well-predicted continuation beats a shuffled one.
    shuffled = model.score("Berlin capital The is France. of Germany Paris is capital of The")
    assert sum(scores) / len(scores) > sum(shuffled) / len(shuffled)


def test_prompt_over_the_context_is_a_clear_error(model: GenAIRuntime) -> None:
    with pytest.raises(ContextOverflow, match=r"the prompt has \d+ tokens but the model's context is 8192"):
        model.generate("hello " * 9000)


def test_empty_prompt_is_a_clear_error(model: GenAIRuntime) -> None:
    with pytest.raises(EmptyInput):
        model.generate("")


def test_top_k_that_would_crash_the_runtime_is_refused(model: GenAIRuntime) -> None:
    with pytest.raises(InvalidSearchOption, match="top_k 1000000 is above the vocabulary size 49152"):
        model.generate("hi", SearchOptions(do_sample=True, top_k=1_000_000))


def test_suites_pass_on_the_default_model(built: HarnessSession, tmp_path: Path) -> None:
    """The product's one command, on the good default model, exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--harness-reports={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, encoding="utf-8"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "harness: cache hit" in result.stdout
