"""Accuracy levels, the derived variant (linked weights, rewritten graph), CPU classes, top-2 margins."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from harness import fsutil
from harness.errors import SourceError
from harness.preparation.compute_paths import accuracy_levels, describe_levels, host_dependent, write_variant
from harness.provenance import isa_class
from harness.runtime.genai import top_two
from harness.testing.fakes import write_genai_folder


@pytest.fixture
def int4_model(tmp_path: Path) -> Path:
    model = write_genai_folder(tmp_path / "built", accuracy_level=4)
    (model / ".harness-entry.json").write_text("{}", encoding="utf-8")  # the cache's manifest: never carried over
    return model


def test_levels_are_read_from_the_graph(int4_model: Path, tmp_path: Path) -> None:
    assert accuracy_levels(int4_model) == {4: 1}
    assert host_dependent({4: 1}) and not host_dependent({1: 151}) and not host_dependent({})
    assert accuracy_levels(write_genai_folder(tmp_path / "fp32")) == {}
    assert describe_levels({4: 151}) == "accuracy_level 4 (int8 activations) x151"
    assert describe_levels({}).startswith("no MatMulNBits nodes")


def test_variant_rewrites_the_graph_and_shares_the_weights(int4_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "twin"
    out.mkdir()
    assert write_variant(int4_model, out, 1) == 1
    assert accuracy_levels(out) == {1: 1}
    assert accuracy_levels(int4_model) == {4: 1}  # the original is untouched
    assert (out / "model.onnx.data").stat().st_ino == (int4_model / "model.onnx.data").stat().st_ino
    assert (out / "model.onnx").stat().st_ino != (int4_model / "model.onnx").stat().st_ino
    assert (out / "genai_config.json").read_bytes() == (int4_model / "genai_config.json").read_bytes()
    assert not (out / ".harness-entry.json").exists()


def test_variant_copies_where_the_file_system_cannot_link(int4_model: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def cross_device(source: Path, target: Path) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    out = tmp_path / "twin"
    out.mkdir()
    write_variant(int4_model, out, 1)
    assert (out / "model.onnx.data").read_bytes() == (int4_model / "model.onnx.data").read_bytes()
    assert (out / "model.onnx.data").stat().st_ino != (int4_model / "model.onnx.data").stat().st_ino


def test_link_failures_other_than_no_link_support_are_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(source: Path, target: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", no_space)
    (tmp_path / "a").write_text("x", encoding="utf-8")
    with pytest.raises(OSError, match="No space"):
        fsutil.link_or_copy(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize(("flags", "expected"), [
    ("fpu sse2 avx2 fma", "avx2"),
    ("avx2 fma avx_vnni", "avx2-vnni"),
    ("avx2 fma avx512f avx512bw avx512vl", "avx512"),
    ("avx2 fma avx_vnni avx512f avx512bw avx512vl avx512_vnni avx512_bf16", "avx512-vnni"),
    ("avx2 fma avx512f avx512bw avx512vl avx512_vnni amx_tile amx_int8 amx_bf16", "amx"),
    ("fp asimd asimddp", "arm-dotprod"),
    ("fp asimd asimddp i8mm", "arm-i8mm"),
    ("fpu sse2", "baseline"),
])
def test_instruction_set_class(flags: str, expected: str) -> None:
    assert isa_class(frozenset(flags.split())) == expected


def test_instruction_set_class_without_flags_says_unknown() -> None:
    assert isa_class(frozenset()).startswith("unknown (")


def test_top_two_reads_the_lead_and_leaves_the_logits_alone() -> None:
    logits = np.array([[0.5, 3.0, 2.75, -1.0]], dtype=np.float32)
    assert top_two(logits) == (1, 0.25, 2)
    assert logits[0, 1] == 3.0


def test_a_file_that_is_not_onnx_is_named(tmp_path: Path) -> None:
    model = write_genai_folder(tmp_path / "junk")
    (model / "model.onnx").write_bytes(b"\xff\xfe junk \x00" * 50)
    with pytest.raises(SourceError, match=r"model\.onnx is not an ONNX model \(DecodeError"):
        accuracy_levels(model)


def test_a_truncated_or_missing_weights_file_is_found_before_a_load(tmp_path: Path) -> None:
    import onnx

    model = write_genai_folder(tmp_path / "external", accuracy_level=4)
    graph = onnx.load(str(model / "model.onnx"))
    onnx.save(graph, str(model / "model.onnx"), save_as_external_data=True, location="model.onnx.data",
              size_threshold=0)
    assert accuracy_levels(model) == {4: 1}  # whole: it reads
    data = model / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:-1])
    with pytest.raises(SourceError, match=r"weights file .*model\.onnx\.data holds [\d,]+ bytes where the graph reads"):
        accuracy_levels(model)
    data.unlink()
    with pytest.raises(SourceError, match=r"model\.onnx\.data is missing"):
        accuracy_levels(model)
