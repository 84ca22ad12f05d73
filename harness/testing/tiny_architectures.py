"""Tiny seeded random-init models of each text-only causal-LM architecture the onnxruntime-genai 0.18 model builder
builds, saved as a fine-tuning run saves them: the architecture matrix (``tests/e2e/test_architectures.py``) runs the
harness's structural checks on each.

    python -m harness.testing.tiny_architectures NAME OUT --tokenizer-from HF_FOLDER [--seed S]
    python -m harness.testing.tiny_architectures --list

Every model has the same small widths (``TINY``: hidden 128, 2 layers, 4 query and 2 key-value heads, MLP 256,
context 1024) plus what its architecture needs to take the builder path real checkpoints take (``Architecture.extra``).
Hidden and MLP widths are multiples of the int4 block size (32), head_dim 32 is even for RoPE, and the context holds
the malformed-input suite's longest prompts (542 tokens). The folder holds bf16 safetensors from the architecture's
transformers config class, and a real model's tokenizer, chat template and special ids (``--tokenizer-from``; the
vocabulary is the tokenizer's). With SmolLM2's tokenizer (49,152 tokens) a model has 6.6 M (tied embeddings) to
13.5 M parameters and builds to int4 in seconds.

Random weights answer nonsense and never choose to stop: these models prove that an architecture builds, loads,
renders its chat template, keeps the output contract and survives malformed input, not that its answers are right.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.testing.random_models import tokenizer_vocab_size, write_random_model

TINY: Mapping[str, Any] = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                           "num_key_value_heads": 2, "intermediate_size": 256, "max_position_embeddings": 1024}
HEAD_DIM = 32  # hidden 128 / 4 heads; set explicitly where a config class would otherwise default to another
WINDOW = 16  # sliding windows shorter than every generation the suites make, so the windowed path runs
LONGROPE_FACTORS = [1.0] * (HEAD_DIM // 2), [1.5] * (HEAD_DIM // 2)  # short, long: one per rotary frequency


@dataclass(frozen=True)
class Architecture:
    """One architecture as the builder dispatches on it, and the config that takes that path in small widths."""

    name: str  # the matrix row's id
    model_type: str  # transformers' model_type (AutoConfig.for_model)
    builder_name: str  # the config.json ``architectures`` entry the builder dispatches on for this row
    about: str  # what the row exercises
    extra: tuple[tuple[str, Any], ...] = ()  # config fields over TINY

    def fields(self, vocab_size: int) -> dict[str, Any]:
        """The config.json fields of the tiny model (special token ids come from the tokenizer's folder)."""
        return {"model_type": self.model_type, **TINY, "vocab_size": vocab_size, **dict(self.extra)}


def _longrope(rope_key: str, type_key: str) -> tuple[tuple[str, Any], ...]:
    """Phi-3 long-context RoPE: a context above the original one selects the builder's LongRoPE class."""
    short, long = LONGROPE_FACTORS
    return (("max_position_embeddings", 2048), ("original_max_position_embeddings", 512),
            (rope_key, {type_key: "longrope", "short_factor": short, "long_factor": long}))


ARCHITECTURES: dict[str, Architecture] = {arch.name: arch for arch in (
    Architecture("llama", "llama", "LlamaForCausalLM", "Llama 3.x RoPE scaling (llama3); the default model covers "
                 "plain RoPE", (("head_dim", HEAD_DIM), ("rope_parameters", {
                     "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 128}))),
    Architecture("mistral", "mistral", "MistralForCausalLM", "no sliding window (Mistral v0.2+, Nemo)",
                 (("head_dim", HEAD_DIM), ("sliding_window", None))),
    Architecture("mistral-sliding-window", "mistral", "MistralForCausalLM", "a sliding window on every layer "
                 "(Mistral-7B v0.1)", (("head_dim", HEAD_DIM), ("sliding_window", WINDOW))),
    Architecture("qwen2", "qwen2", "Qwen2ForCausalLM", "q/k/v biases"),
    Architecture("qwen3", "qwen3", "Qwen3ForCausalLM", "q/k norms", (("head_dim", HEAD_DIM),)),
    Architecture("phi", "phi", "PhiForCausalLM", "LayerNorm, parallel attention and MLP, partial rotary 0.5"),
    Architecture("phi3", "phi3", "Phi3ForCausalLM", "context = original context (Phi-3-mini-4k: Phi3MiniModel)",
                 (("original_max_position_embeddings", TINY["max_position_embeddings"]),)),
    Architecture("phi3-longrope", "phi3", "Phi3ForCausalLM", "LongRoPE as hub configs write it (rope_scaling.type; "
                 "Phi-3.5-mini)", _longrope("rope_scaling", "type")),
    Architecture("phi3-longrope-tf5", "phi3", "Phi3ForCausalLM", "LongRoPE as a transformers 5 config writes it "
                 "(rope_parameters.rope_type)", _longrope("rope_parameters", "rope_type")),
    Architecture("gemma", "gemma", "GemmaForCausalLM", "embedding scale, norm weight offset",
                 (("head_dim", HEAD_DIM),)),
    Architecture("gemma2", "gemma2", "Gemma2ForCausalLM", "sliding window on alternate layers, logit softcapping",
                 (("head_dim", HEAD_DIM), ("query_pre_attn_scalar", HEAD_DIM), ("sliding_window", WINDOW))),
    Architecture("gemma3", "gemma3_text", "Gemma3ForCausalLM", "RoPE per attention type (transformers 5), q/k "
                 "norms, sliding window", (("head_dim", HEAD_DIM), ("query_pre_attn_scalar", HEAD_DIM),
                                           ("sliding_window", WINDOW),
                                           ("layer_types", ["sliding_attention", "full_attention"]))),
    Architecture("granite", "granite", "GraniteForCausalLM", "embedding, attention and residual multipliers, "
                 "logits scaling", (("embedding_multiplier", 12.0), ("attention_multiplier", 0.0078125),
                                    ("logits_scaling", 8.0), ("residual_multiplier", 0.22))),
    Architecture("granitemoehybrid", "granitemoehybrid", "GraniteMoeHybridForCausalLM", "Granite 4 dense: attention "
                 "layers and a shared MLP (the builder builds no Mamba layer)",
                 (("num_local_experts", 0), ("shared_intermediate_size", 256),
                  ("layer_types", ["attention", "attention"]), ("position_embedding_type", "rope"))),
    Architecture("olmo", "olmo", "OlmoForCausalLM", "non-parametric LayerNorm"),
    Architecture("smollm3", "smollm3", "SmolLM3ForCausalLM", "a NoPE layer (the real models: every 4th layer)",
                 (("no_rope_layers", [1, 0]),)),
    Architecture("nemotron", "nemotron", "NemotronForCausalLM", "LayerNorm1P, relu2 MLP, partial rotary 0.5",
                 (("head_dim", HEAD_DIM),)),
    Architecture("ernie", "ernie4_5", "Ernie4_5ForCausalLM", "interleaved RoPE", (("head_dim", HEAD_DIM),)),
    Architecture("hunyuan", "hunyuan_v1_dense", "HunYuanDenseV1ForCausalLM", "dynamic NTK-alpha RoPE, q/k norms",
                 (("head_dim", HEAD_DIM), ("rope_parameters", {"rope_type": "dynamic", "alpha": 1000.0,
                                                               "factor": 1.0, "rope_theta": 10000.0}))),
    Architecture("lfm2", "lfm2", "Lfm2ForCausalLM", "short-convolution and attention layers",
                 (("layer_types", ["conv", "full_attention"]),)),
    Architecture("lfm2_moe", "lfm2_moe", "Lfm2MoeForCausalLM", "convolution and attention layers, MoE (QMoE)",
                 (("layer_types", ["conv", "full_attention"]), ("num_dense_layers", 1), ("num_experts", 4),
                  ("num_experts_per_tok", 2), ("moe_intermediate_size", 64))),
    Architecture("gpt_oss", "gpt_oss", "GptOssForCausalLM", "MoE, attention sinks, sliding window on alternate "
                 "layers", (("head_dim", HEAD_DIM), ("num_local_experts", 4), ("num_experts_per_tok", 2),
                            ("sliding_window", WINDOW))),
    Architecture("phimoe", "phimoe", "PhiMoEForCausalLM", "MoE with LongRoPE",
                 (("max_position_embeddings", 2048), ("original_max_position_embeddings", 512),
                  ("num_local_experts", 4), ("rope_scaling", {
                      "type": "longrope", "rope_type": "longrope", "short_factor": LONGROPE_FACTORS[0],
                      "long_factor": LONGROPE_FACTORS[1], "short_mscale": 1.0, "long_mscale": 1.0,
                      "original_max_position_embeddings": 512}))),
)}


# What else the builder dispatches on, and why no tiny model of it is made here.
REMOTE_CODE = "a text model with no transformers 5 class (remote code only): none can be made offline"
MULTIMODAL = "not a text-only model (vision, audio or speech)"
NOT_MADE: Mapping[str, str] = {
    **dict.fromkeys(("ChatGLMModel", "ChatGLMForConditionalGeneration", "InternLM2ForCausalLM",
                     "Phi3SmallForCausalLM"), REMOTE_CODE),
    **dict.fromkeys(("Gemma3ForConditionalGeneration", "Gemma4ForConditionalGeneration",
                     "Gemma4UnifiedForConditionalGeneration", "Lfm2AudioForConditionalGeneration",
                     "Lfm2VlForConditionalGeneration", "Mistral3ForConditionalGeneration", "Phi3VForCausalLM",
                     "Phi4MMForCausalLM", "Qwen2_5_VLForConditionalGeneration", "Qwen3VLForConditionalGeneration",
                     "Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration",
                     "VideoChatFlashQwenForCausalLM", "WhisperForConditionalGeneration"), MULTIMODAL),
}


def builder_architectures() -> set[str]:
    """The ``architectures`` names the installed model builder dispatches on (read from its source, not imported:
    importing it loads torch)."""
    spec = importlib.util.find_spec("onnxruntime_genai")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("onnxruntime_genai is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / "models" / "builder.py"
    return set(re.findall(r'config\.architectures\[0\] == "(\w+)"', source.read_text(encoding="utf-8")))


def make_tiny_model(architecture: Architecture, out: Path, tokenizer_from: Path, seed: int = 0) -> Path:
    """Write the seeded tiny model of ``architecture`` into ``out`` with ``tokenizer_from``'s tokenizer, chat template
    and special ids (the end-of-sequence id pads where that folder names no padding id: the config classes' own
    defaults can lie outside a small vocabulary)."""
    eos = json.loads((tokenizer_from / "config.json").read_text(encoding="utf-8")).get("eos_token_id")
    return write_random_model(architecture.fields(tokenizer_vocab_size(tokenizer_from)), out, tokenizer_from, seed,
                              pad_token_id=eos if isinstance(eos, int) else None)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.testing.tiny_architectures",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", choices=sorted(ARCHITECTURES))
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--tokenizer-from", type=Path,
                        help="a Hugging Face folder whose tokenizer and chat template the model takes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="list the architectures and what each exercises")
    args = parser.parse_args(argv)
    if args.list:
        for arch in ARCHITECTURES.values():
            print(f"{arch.name:22} {arch.builder_name:38} {arch.about}")
        for name, why in NOT_MADE.items():
            print(f"{'(not made)':22} {name:38} {why}")
        return 0
    if args.name is None or args.out is None or args.tokenizer_from is None:
        parser.error("NAME, OUT and --tokenizer-from are required")
    make_tiny_model(ARCHITECTURES[args.name], args.out, args.tokenizer_from, args.seed)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
