"""Every text architecture, proven cheaply (issue 23): a tiny seeded random-init model of each text-only causal-LM
architecture the installed onnxruntime-genai 0.18 model builder dispatches on (``harness.testing.tiny_architectures``)
goes through ``pytest --model=DIR`` with the structural suites: the build, the load, the chat template and special
tokens, the output contract (every answer runs to its token limit and accounts for its tokens), malformed input and
invalid settings, and Foundry Local's register, load and chat. Answer quality is out of scope: random weights answer
nonsense.

A row that fails for a known upstream reason is an xfail(strict=True) naming the cause and its owner: the row must
fail with that cause alone, and a fix upstream turns it into XPASS, which fails the run until the row is updated.
Measured 2026-12-06 on 2 cores shared with other jobs (load average 4 to 4.7): a row takes 20 to 60 s (making the
model 8 to 16 s of it, mostly importing torch), the whole matrix with ``-n 2`` 7 min 55 s.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.testing.tiny_architectures import ARCHITECTURES
from tests.e2e.architecture_rows import (
    Known,
    UpstreamDefect,
    drop_models,
    judge,
    make_model,
    run_harness,
    summary,
)
from tests.e2e.support import open_session, progress

pytestmark = pytest.mark.skipif(importlib.util.find_spec("foundry_local_sdk") is None,
                                reason="foundry-local-sdk is installed on Linux x86-64 only")

BUILDER = "microsoft/onnxruntime-genai"
KNOWN = {
    "mistral-sliding-window": Known(
        "GroupQueryAttention", "the 0.18 builder marks no layer local for a Mistral config with sliding_window and no "
        "layer_types (transformers 5 writes none), yet writes a sliding_window section: generation fails past the "
        "window", BUILDER),
    "phi3-longrope-tf5": Known(
        "KeyError: 'type'", "the 0.18 builder's Phi3MiniLongRoPEModel reads rope_parameters['type']; a transformers 5 "
        "config has only 'rope_type'", BUILDER),
    "smollm3": Known(
        "KeyError: 'position_ids'", "the 0.18 builder emits a RotaryEmbedding in SmolLM3's NoPE layers, which needs a "
        "position_ids input the graph does not have (every real SmolLM3 has NoPE layers)", BUILDER),
    "gpt_oss": Known(
        "Original GPT-OSS MXFP4 tensor", "the 0.18 builder quantizes gpt-oss only from the original MXFP4 expert "
        "tensors, not from a bf16 save such as a fine-tune's (fp32 builds: row gpt_oss-fp32)", BUILDER),
    "phimoe": Known(
        "does not support this model's architecture", "the 0.18 builder dispatches on the hub's remote-code name "
        "PhiMoEForCausalLM; transformers 5 saves PhimoeForCausalLM (and the builder makes PhiMoE for CUDA only)",
        BUILDER),
}
# (row id, architecture, precision): every architecture at int4, the harness's default; gpt-oss at fp32 too.
ROWS = [(name, name, "int4") for name in ARCHITECTURES] + [("gpt_oss-fp32", "gpt_oss", "fp32")]


@pytest.fixture(scope="session")
def tokenizer_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model as a Hugging Face folder (its GGUF converted once, cached): its tokenizer and chat template."""
    session = open_session(tmp_path_factory.mktemp("tokenizer-reports"))
    folder = session.reference_folder(progress)
    assert folder is not None
    return folder


@pytest.mark.parametrize(("row", "architecture", "precision"), [
    pytest.param(row, architecture, precision, id=row, marks=KNOWN[row].mark() if row in KNOWN else ())
    for row, architecture, precision in ROWS])
def test_architecture_passes_the_structural_checks(row: str, architecture: str, precision: str,
                                                   tokenizer_folder: Path, tmp_path: Path,
                                                   record_property: Callable[[str, object], None]) -> None:
    started = time.perf_counter()
    make_model(architecture, tmp_path / "model", tokenizer_folder)
    made = time.perf_counter()
    try:
        run = run_harness(tmp_path / "model", tmp_path, f"--precision={precision}")
    finally:
        drop_models(tmp_path)
    record_property("make_s", round(made - started, 1))
    record_property("harness_s", round(time.perf_counter() - made, 1))
    for name, value in summary(run).items():
        record_property(name, value)
    judge(run, KNOWN.get(row))


def test_a_row_whose_build_breaks_fails(tokenizer_folder: Path, tmp_path: Path) -> None:
    """A model the builder cannot read (its weights file cut short) fails its row; it would be a known defect's xfail
    only if that defect's signature were its error."""
    make_model("llama", tmp_path / "model", tokenizer_folder)
    weights = tmp_path / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    try:
        run = run_harness(tmp_path / "model", tmp_path)
    finally:
        drop_models(tmp_path)
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.output[-3000:]
    with pytest.raises(AssertionError, match=r"the harness exited 4: ERROR: harness: model builder int4 failed"):
        judge(run, KNOWN["smollm3"])
    with pytest.raises(UpstreamDefect):  # the same run with its own cause as the known one
        judge(run, Known("model builder int4 failed", "a cut weights file", "nobody"))
