"""The config view and builder options that bridge the 0.18 model builder's gaps (Gemma 3 RoPE, sliding windows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import BuildError
from harness.preparation.source_views import UNWINDOWED_KV, adaptations, gemma3_view, write_view

LAYERS = ["sliding_attention"] * 5 + ["full_attention"]
# Gemma 3 270M as the hub's config.json writes it (legacy keys) and as a transformers 5 save writes it (nested).
HUB = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 64, "head_dim": 16,
       "num_attention_heads": 4, "num_key_value_heads": 1, "num_hidden_layers": 6, "intermediate_size": 128,
       "vocab_size": 256, "layer_types": LAYERS, "sliding_window": 512, "query_pre_attn_scalar": 16,
       "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0, "rope_scaling": None}
SAVED = {**{k: v for k, v in HUB.items() if not k.startswith("rope_")},
         "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}}}


@pytest.mark.parametrize("config", [HUB, SAVED], ids=["hub-legacy-keys", "transformers5-nested"])
def test_the_view_gives_the_builder_flat_rope_and_keeps_the_nested_form(config: dict[str, Any]) -> None:
    view = gemma3_view(config)
    rope = view["rope_parameters"]
    assert (rope["rope_type"], rope["rope_theta"], rope["rope_local_base_freq"]) == ("default", 1e6, 1e4)
    assert rope["full_attention"] == {"rope_type": "default", "rope_theta": 1e6}
    assert rope["sliding_attention"] == {"rope_type": "default", "rope_theta": 1e4}
    assert not {"rope_theta", "rope_local_base_freq", "rope_scaling"} & view.keys()
    assert view["layer_types"] == LAYERS


@pytest.mark.parametrize("config", [HUB, SAVED], ids=["hub-legacy-keys", "transformers5-nested"])
def test_transformers_reads_the_view_as_it_reads_the_original(config: dict[str, Any], tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    original, view = tmp_path / "original", tmp_path / "view"
    original.mkdir()
    (original / "config.json").write_text(json.dumps(config), encoding="utf-8")
    write_view(original, gemma3_view(config), view)
    want = transformers.AutoConfig.from_pretrained(original).rope_parameters
    got = transformers.AutoConfig.from_pretrained(view).rope_parameters
    assert {k: got[k] for k in want} == want


def test_a_scaled_global_rope_is_refused_with_its_owner() -> None:
    scaled = {**HUB, "rope_scaling": {"rope_type": "linear", "factor": 8.0}}
    with pytest.raises(BuildError, match=r"'linear' RoPE on its full attention layers.*microsoft/onnxruntime-genai"):
        gemma3_view(scaled)


def test_sliding_window_layers_get_full_length_caches_unless_the_user_chose() -> None:
    gemma2 = {"architectures": ["Gemma2ForCausalLM"], "layer_types": LAYERS, "sliding_window": 4096}
    assert adaptations(gemma2).extra_options == (UNWINDOWED_KV,)
    assert adaptations(gemma2, ("windowed_kv_cache=true",)).extra_options == ()
    assert adaptations(gemma2, with_options=False).extra_options == ()
    assert adaptations(gemma2).config_view is None


@pytest.mark.parametrize("config", [
    {"architectures": ["LlamaForCausalLM"]},
    {"architectures": ["MistralForCausalLM"], "sliding_window": 4096},  # no layer_types: the builder ignores it
    {"architectures": ["Qwen2ForCausalLM"], "layer_types": ["full_attention"] * 2, "sliding_window": None},
], ids=["llama", "mistral-window", "qwen2-full-layers"])
def test_other_folders_build_as_they_are(config: dict[str, Any]) -> None:
    assert adaptations(config).config_view is None and adaptations(config).extra_options == ()


def test_the_view_links_the_files_and_leaves_the_source_alone(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text(json.dumps(HUB), encoding="utf-8")
    (source / "model.safetensors").write_bytes(b"weights")
    view = write_view(source, gemma3_view(HUB), tmp_path / "view")
    assert json.loads((source / "config.json").read_text(encoding="utf-8")) == HUB
    assert (view / "model.safetensors").stat().st_ino == (source / "model.safetensors").stat().st_ino
    assert "rope_local_base_freq" in json.loads((view / "config.json").read_text(encoding="utf-8"))["rope_parameters"]
