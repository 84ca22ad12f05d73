"""Seeded random-init models of real architectures, saved as a fine-tuning run saves them.

A model of a real architecture's shape costs the same time and memory to convert, build, load and run as the
trained model of that shape; only its answers differ (random weights never choose to stop, so every answer
runs to its token limit). The harness measures and tests itself at the sizes users bring with these:
``benchmarks/scale.py`` and the memory plan's tests.

    python -m harness.testing.random_models SHAPE OUT --tokenizer-from HF_FOLDER [--context N] [--seed S]

The folder holds bf16 ``model.safetensors`` shards, ``config.json``, ``generation_config.json`` and the
tokenizer and chat template of a real model (``--tokenizer-from``): the vocabulary is the tokenizer's, so every
id the model can produce decodes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "tokenizer.model")


@dataclass(frozen=True)
class Shape:
    """A real model's architecture and widths (its config.json), with the vocabulary left to the tokenizer."""

    name: str
    like: str  # the real model whose shape this is
    model_type: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    tie_word_embeddings: bool
    context_length: int
    extra: tuple[tuple[str, Any], ...] = ()  # further config.json entries of that architecture

    def config(self, vocab_size: int, context_length: int | None = None) -> dict[str, Any]:
        return {"model_type": self.model_type, "hidden_size": self.hidden_size,
                "num_hidden_layers": self.num_hidden_layers, "num_attention_heads": self.num_attention_heads,
                "num_key_value_heads": self.num_key_value_heads, "intermediate_size": self.intermediate_size,
                "tie_word_embeddings": self.tie_word_embeddings, "vocab_size": vocab_size,
                "max_position_embeddings": context_length or self.context_length, **dict(self.extra)}


SHAPES: dict[str, Shape] = {shape.name: shape for shape in (
    Shape("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct", "qwen2", 896, 24, 14, 2, 4864, True, 32768,
          (("rope_theta", 1000000.0), ("rms_norm_eps", 1e-6))),
    Shape("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct", "qwen2", 1536, 28, 12, 2, 8960, True, 32768,
          (("rope_theta", 1000000.0), ("rms_norm_eps", 1e-6))),
    Shape("llama3.2-3b", "meta-llama/Llama-3.2-3B-Instruct", "llama", 3072, 28, 24, 8, 8192, True, 131072,
          (("rope_theta", 500000.0), ("rms_norm_eps", 1e-5), ("head_dim", 128))),
    Shape("phi3.5-mini", "microsoft/Phi-3.5-mini-instruct", "phi3", 3072, 32, 32, 32, 8192, False, 131072,
          (("rope_theta", 10000.0), ("rms_norm_eps", 1e-5), ("original_max_position_embeddings", 4096),
           ("rope_scaling", {"type": "longrope", "short_factor": [1.0] * 48, "long_factor": [1.0] * 48}))),
)}


def tokenizer_vocab_size(folder: Path) -> int:
    """The number of ids the tokenizer can produce (its vocabulary and added tokens)."""
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(folder))


def make_random_model(shape: Shape, out: Path, tokenizer_from: Path, context_length: int | None = None,
                      seed: int = 0) -> Path:
    """Write a seeded random-init bf16 model of ``shape`` into ``out``, with ``tokenizer_from``'s tokenizer."""
    return write_random_model(shape.config(tokenizer_vocab_size(tokenizer_from), context_length), out,
                              tokenizer_from, seed)


def write_random_model(fields: Mapping[str, Any], out: Path, tokenizer_from: Path, seed: int = 0,
                       pad_token_id: int | None = None) -> Path:
    """Write a seeded random-init bf16 model of the config.json ``fields`` (``model_type`` and ``vocab_size``
    among them) into ``out``, with ``tokenizer_from``'s tokenizer, chat template and special token ids (its
    config.json's; ``pad_token_id`` where that names none)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    special = json.loads((tokenizer_from / "config.json").read_text(encoding="utf-8"))
    ids = {key: special[key] for key in ("bos_token_id", "eos_token_id", "pad_token_id") if key in special}
    if pad_token_id is not None:
        ids.setdefault("pad_token_id", pad_token_id)
    config = AutoConfig.for_model(**fields, **ids)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    del model
    GenerationConfig(**ids).save_pretrained(out)  # type: ignore[no-untyped-call]
    for name in TOKENIZER_FILES:
        if (tokenizer_from / name).is_file():
            shutil.copy2(tokenizer_from / name, out / name)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.testing.random_models",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("out", type=Path)
    parser.add_argument("--tokenizer-from", type=Path, required=True,
                        help="a Hugging Face folder whose tokenizer and chat template the model takes")
    parser.add_argument("--context", type=int, default=None, help="max_position_embeddings (default: the shape's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    make_random_model(SHAPES[args.shape], args.out, args.tokenizer_from, args.context, args.seed)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
