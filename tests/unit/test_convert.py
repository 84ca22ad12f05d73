"""The streaming GGUF conversion's pieces: row-chunked dequantization and the sharded safetensors writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="conversion needs the convert extra (torch), absent on win_arm64")

from gguf import GGMLQuantizationType, dequantize, quantize  # noqa: E402 (after the skip: these come with it)
from safetensors.torch import load_file  # noqa: E402

from harness.preparation.convert import INDEX, ShardWriter, dequantize_rows  # noqa: E402


@pytest.mark.parametrize("qtype", [GGMLQuantizationType.Q8_0, GGMLQuantizationType.F16, GGMLQuantizationType.F32])
def test_row_chunks_dequantize_to_the_same_values(qtype: GGMLQuantizationType) -> None:
    weights = np.random.default_rng(0).standard_normal((70, 64)).astype(np.float32)
    data = quantize(weights, qtype)
    whole = dequantize(data, qtype)
    chunked = dequantize_rows(data, qtype, rows=16)
    assert chunked.dtype == np.float32 and chunked.flags.writeable
    np.testing.assert_array_equal(chunked, whole)


def test_shards_hold_at_most_the_limit_and_the_index_names_each_tensor(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, limit=4096)
    tensors = {f"layer.{i}.weight": torch.full((16, 16), float(i)) for i in range(10)}  # 1 KB each
    tensors["embed.weight"] = torch.ones(64, 32)  # 8 KB: a shard of its own
    for name, tensor in tensors.items():
        writer.add(name, tensor)
        assert writer.pending_bytes < 4096  # a full shard is written at once
    assert sorted(writer.close()) == sorted(tensors)
    index = json.loads((tmp_path / INDEX).read_text(encoding="utf-8"))
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in tensors.values())
    loaded: dict[str, torch.Tensor] = {}
    for shard in set(index["weight_map"].values()):
        assert (tmp_path / shard).stat().st_size < 4096 + 9000
        loaded.update(load_file(tmp_path / shard))
    assert all(torch.equal(loaded[name], tensor) for name, tensor in tensors.items())
    assert not list(tmp_path.glob("shard-*"))


def test_one_small_shard_is_a_plain_model_safetensors(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path)
    writer.add("w", torch.zeros(2, 2))
    assert writer.close() == ["w"]
    assert (tmp_path / "model.safetensors").is_file() and not (tmp_path / INDEX).exists()
