"""Prompts of an exact length, which lengths a profile measures, and the length gates' verdicts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from harness.checks import lengths, memory
from harness.checks.lengths import LengthRun
from harness.checks.memory import MB
from harness.testing.fakes import FakeRuntime, write_genai_folder


@pytest.fixture
def fake(tmp_path: Path) -> FakeRuntime:
    return FakeRuntime(write_genai_folder(tmp_path / "model"))


def test_prompts_have_the_exact_token_count(fake: FakeRuntime) -> None:
    ids = lengths.source_ids(fake, 3000)
    for n in (1, 16, 64, 256, 2048, 3000):
        assert len(fake.encode(lengths.prompt_of_tokens(fake, ids, n))) == n


def test_the_text_repeats_when_a_prompt_needs_more(fake: FakeRuntime, tmp_path: Path) -> None:
    text = tmp_path / "short.txt"
    text.write_text("It is a truth universally acknowledged.\n", encoding="utf-8")
    ids = lengths.source_ids(fake, 200, text)
    assert len(ids) >= 200 and fake.decode(ids).count(fake.decode(fake.encode("\n\n"))) >= 4


def test_the_shipped_text_is_long_enough_for_an_8k_context() -> None:
    assert len(lengths.TEXT.read_text(encoding="utf-8")) > 40_000  # about 10,800 tokens for SmolLM2


@dataclass
class OffByOne(FakeRuntime):
    """A tokenizer that never round-trips: every text encodes to one token more than it has characters."""

    def encode(self, text: str) -> list[int]:
        return [*super().encode(text), 7]


def test_a_tokenizer_that_cannot_hit_the_length_is_one_clear_error(tmp_path: Path) -> None:
    runtime = OffByOne(write_genai_folder(tmp_path / "model"))
    with pytest.raises(lengths.LengthError, match=r"no cut of the text encodes to exactly 1 tokens \(last try: 2\)"):
        lengths.prompt_of_tokens(runtime, list(range(10, 60)), 1)
    with pytest.raises(lengths.LengthError, match="cannot cut a 51-token prompt from 50 tokens of text"):
        lengths.prompt_of_tokens(runtime, list(range(10, 60)), 51)


def test_at_most_takes_the_longest_cut_that_fits(fake: FakeRuntime, tmp_path: Path) -> None:
    ids = lengths.repeated_ids(fake, "A short passage.", 40, separator=" ")
    assert ids == fake.encode(" ".join(["A short passage."] * 3))  # the fewest copies with 40 tokens
    runtime = OffByOne(write_genai_folder(tmp_path / "other"))
    prompt = lengths.prompt_of_tokens(runtime, ids, 20, at_most=True)
    assert prompt == runtime.decode(ids[:19]) and len(runtime.encode(prompt)) == 20
    with pytest.raises(lengths.LengthError, match="no cut of the text encodes to 1 tokens or fewer"):
        lengths.prompt_of_tokens(runtime, ids, 1, at_most=True)


@pytest.mark.parametrize(("context", "cap", "planned"), [
    (8192, 2048, [1, 16, 64, 256, 1024, 2048]),
    (8192, None, [1, 16, 64, 256, 1024, 2048, 8160]),
    (1024, 2048, [1, 16, 64, 256, 992]),
    (2080, None, [1, 16, 64, 256, 1024, 2048]),
])
def test_planned_lengths_follow_the_context_and_the_profile(context: int, cap: int | None, planned: list[int]) -> None:
    assert lengths.planned_lengths(context, cap) == planned


def test_each_skipped_length_says_why() -> None:
    assert lengths.resolve_length("context", 8192, 2048) == (
        None, "context - 32 = 8160 tokens is over this profile's cap of 2048 tokens")
    assert lengths.resolve_length("2048", 1024, 2048) == (
        None, "2048 tokens is over the context (1024) minus 32 for the answer")
    assert lengths.resolve_length("2048", 8192, 1024) == (None, "2048 tokens is over this profile's cap of 1024 tokens")
    assert lengths.resolve_length("context", 2080, None) == (None, "context - 32 is 2048 tokens, measured as such")
    assert lengths.resolve_length("64", 8192, 2048) == (64, "")


def run(tokens: int, tpot_ms: float = 5.0, prefill_ms_per_token: float = 1.5, peak_mb: float = 200.0) -> LengthRun:
    return LengthRun(tokens, 32, tokens * prefill_ms_per_token / 1e3, tpot_ms / 1e3, tpot_ms / 1e3,
                     tokens * prefill_ms_per_token / 1e3, int(peak_mb * MB))


def test_decode_gate_allows_growth_in_proportion_to_the_prompt() -> None:
    assert lengths.tpot_verdict(run(1, 5.0), run(2048, 15.0), 3.0) is None  # 3x, 7.14x allowed
    assert lengths.tpot_verdict(run(1, 5.0), run(2048, 40.0), 3.0) == (
        "decode slows 8.0x from 1 to 2048 prompt tokens (5.00 -> 40.00 ms/token), over the 7.14x allowed "
        "(1 + 3 per 1k tokens)")
    one_token = LengthRun(1, 1, 0.01, None, None, 0.01, MB)
    unknown = "decode time per token is unknown: fewer than 2 output tokens"
    assert lengths.tpot_verdict(one_token, run(2048), 3.0) == unknown


def test_prefill_gate_compares_with_the_cheapest_length_not_the_shortest() -> None:
    runs = [run(1, prefill_ms_per_token=18.0), run(256, prefill_ms_per_token=1.5), run(2048, prefill_ms_per_token=2.0)]
    assert lengths.prefill_verdict(runs, 0.75) is None  # 1.33x, 2.34x allowed
    runs[-1] = run(2048, prefill_ms_per_token=4.0)
    assert lengths.prefill_verdict(runs, 0.75) == (
        "prefill costs 4.00 ms/token at 2048 tokens, 2.7x the 1.50 ms/token at 256, over the 2.34x allowed "
        "(1 + 0.75 per 1k tokens)")
    unmeasured = [LengthRun(n, 32, 0.0, 0.005, 0.005, 0.0, MB) for n in (1, 2048)]
    assert lengths.prefill_verdict(unmeasured, 0.75) == "prefill time is not measured: 0 s for 1 tokens"


def write_decoder(folder: Path, outputs: Sequence[tuple[str, int, list[str | int]]]) -> Path:
    """A decoder graph that only declares its outputs (name, element type, shape)."""
    folder.mkdir(parents=True, exist_ok=True)
    values = [helper.make_tensor_value_info(name, kind, shape) for name, kind, shape in outputs]
    graph = helper.make_graph([], "decoder", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 1])],
                              values)
    onnx.save(helper.make_model(graph), str(folder / "model.onnx"))
    config = {"model": {"context_length": 4096, "decoder": {"filename": "model.onnx",
                                                            "outputs": {"logits": "logits",
                                                                        "present_key_names": "present.%d.key",
                                                                        "present_value_names": "present.%d.value"}}}}
    (folder / "genai_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_memory_model_reads_bytes_per_token_from_the_graph(tmp_path: Path) -> None:
    kv: list[str | int] = ["batch_size", 3, "total_sequence_length", 64]
    folder = write_decoder(tmp_path / "m", [
        ("logits", TensorProto.FLOAT, ["batch_size", "sequence_length", 49152]),
        *((f"present.{layer}.{part}", TensorProto.FLOAT16, kv) for layer in range(2) for part in ("key", "value")),
    ])
    model = lengths.memory_model(folder)
    assert model == lengths.MemoryModel(kv_bytes_per_token=4 * 3 * 64 * 2, logits_bytes_per_token=49152 * 4)
    assert model.predicted(100, 32) == 1536 * 132 + 196608 * 100


def test_memory_model_is_none_without_a_readable_decoder(tmp_path: Path) -> None:
    assert lengths.memory_model(write_genai_folder(tmp_path / "fake")) is None  # empty model.onnx
    assert lengths.memory_model(tmp_path / "missing") is None
    logits_only = write_decoder(tmp_path / "l", [("logits", TensorProto.FLOAT, ["b", "s", 10])])
    assert lengths.memory_model(logits_only) is None


def test_memory_gate_compares_peak_growth_with_kv_cache_and_logits() -> None:
    model = lengths.MemoryModel(kv_bytes_per_token=46080, logits_bytes_per_token=196608)
    predicted_mb = 2047 * (46080 + 196608) / MB  # 474 MB
    shortest = run(1, peak_mb=200)
    ratio, verdict = lengths.memory_verdict(shortest, run(2048, peak_mb=200 + 1.1 * predicted_mb), model, 1.5)
    assert ratio == pytest.approx(1.1, abs=0.01) and verdict is None
    ratio, verdict = lengths.memory_verdict(shortest, run(2048, peak_mb=200 + 2 * predicted_mb), model, 1.5)
    assert verdict == ("peak RSS grows 948 MB from 1 to 2048 prompt tokens, 2.00x the 474 MB that the KV cache "
                       "(90 MB) and the prefill's logits (384 MB) take (limit 1.5x)")


def test_memory_gate_on_bounded_peaks_passes_only_on_the_upper_bound() -> None:
    """Off Linux (no per-window peak) a peak is bounded: by the process's lifetime peak from above, exact when the
    window set it, by the samples from below. The gate must never pass on a growth the bounds do not prove."""
    model = lengths.MemoryModel(kv_bytes_per_token=46080, logits_bytes_per_token=196608)
    predicted = 2047 * (46080 + 196608)  # 474 MB
    load = memory.PeakRss(200 * MB, 1400 * MB, memory.LIFETIME_PEAK_BOUND)  # a model load set the lifetime peak
    shortest = dataclasses.replace(run(1), peak=load)
    hidden = dataclasses.replace(run(2048, peak_mb=220), peak=memory.PeakRss(220 * MB, 1400 * MB, load.source))
    with pytest.raises(memory.PeakInconclusive, match="inconclusive on this platform"):
        lengths.memory_verdict(shortest, hidden, model, 1.5)
    tight = dataclasses.replace(run(1), peak=memory.PeakRss(200 * MB, 200 * MB, load.source))
    set_here = memory.PeakRss.exactly(int(200 * MB + 2 * predicted), memory.LIFETIME_PEAK_SET_HERE)
    ratio, verdict = lengths.memory_verdict(tight, dataclasses.replace(run(2048), peak=set_here), model, 1.5)
    assert ratio == pytest.approx(2.0, abs=0.01) and verdict is not None and verdict.startswith(
        "peak RSS grows at least 948 MB from 1 to 2048 prompt tokens")
    assert "process lifetime peak (set in this window)" in verdict
    ratio, verdict = lengths.memory_verdict(shortest, hidden, model, 4.0)  # 1200 MB at most: within 4x
    assert verdict is None and ratio == pytest.approx(1200 * MB / predicted)


def test_table_lists_every_length() -> None:
    runs = [run(1, 4.6, 17.5, 293.1), LengthRun(2048, 1, 4.3, None, None, 4.3, 858 * MB)]
    assert lengths.table(runs).splitlines() == [
        "prompt tokens   TTFT s   TPOT ms (median)   prefill ms/token   peak RSS MB",
        "            1    0.018             4.60             17.500         293.1",
        "         2048    4.300                -              2.100         858.0",
    ]
