"""peft adapters for testing the harness's adapter path: fake ones (files alone, for detection) and real seeded ones.

``write_adapter_folder`` writes what detection reads (``adapter_config.json`` and the safetensors header of
``adapter_model.safetensors``) without torch. The real ones run peft in a child process, as the merge does::

    python -m harness.testing.adapters lora BASE_FOLDER OUT [--r 4] [--alpha 1] [--targets q_proj,v_proj] [--seed 0]
    python -m harness.testing.adapters tiny-model OUT [--dtype bfloat16]

``lora`` initializes the LoRA weights at random (``init_lora_weights=False``, seeded), so that the merge changes the
weights it targets, as a trained adapter does. ``tiny-model`` saves a two-layer llama of random weights (widths 32,
vocabulary 64) with a placeholder tokenizer: enough for a merge, not for a build.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# The modules a fake adapter adapts, fitting harness.testing.fakes.write_hf_folder's model (one layer, widths 4):
# module -> (in, out) features.
FAKE_MODULES = {"model.layers.0.self_attn.q_proj": (4, 4), "model.layers.0.self_attn.v_proj": (4, 4)}


def write_adapter_folder(path: Path, base: str | None = None, modules: Mapping[str, tuple[int, int]] | None = None,
                         rank: int = 2, **config: Any) -> Path:
    """A folder that detection reads as a LoRA adapter: its config (``config`` overrides the fields) and a weights
    file whose header gives each module's lora_A [rank, in] and lora_B [out, rank] (zeros: never merged)."""
    path.mkdir(parents=True, exist_ok=True)
    modules = FAKE_MODULES if modules is None else modules
    document = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base, "r": rank,
                "lora_alpha": rank, "target_modules": sorted({name.rsplit(".", 1)[-1] for name in modules}),
                "fan_in_fan_out": False, **config}
    (path / "adapter_config.json").write_text(json.dumps(document), encoding="utf-8")
    header: dict[str, Any] = {}
    offset = 0
    for module, (inputs, outputs) in sorted(modules.items()):
        for part, shape in (("lora_A", [rank, inputs]), ("lora_B", [outputs, rank])):
            size = 4 * shape[0] * shape[1]
            header[f"base_model.model.{module}.{part}.weight"] = {"dtype": "F32", "shape": shape,
                                                                  "data_offsets": [offset, offset + size]}
            offset += size
    encoded = json.dumps(header).encode()
    (path / "adapter_model.safetensors").write_bytes(len(encoded).to_bytes(8, "little") + encoded + bytes(offset))
    return path


def make_lora_adapter(base: Path, out: Path, r: int = 4, alpha: int = 1,
                      targets: Sequence[str] = ("q_proj", "v_proj"), seed: int = 0) -> Path:
    """A seeded LoRA adapter of ``base`` saved into ``out`` by peft (in a child process)."""
    subprocess.run([sys.executable, "-m", "harness.testing.adapters", "lora", str(base), str(out), "--r", str(r),
                    "--alpha", str(alpha), "--targets", ",".join(targets), "--seed", str(seed)], check=True,
                   capture_output=True, text=True, encoding="utf-8")
    return out


def make_tiny_model(out: Path, dtype: str = "bfloat16") -> Path:
    """A two-layer llama of random weights saved at ``dtype`` (in a child process)."""
    subprocess.run([sys.executable, "-m", "harness.testing.adapters", "tiny-model", str(out), "--dtype", dtype],
                   check=True, capture_output=True, text=True, encoding="utf-8")
    return out


def _lora(base: Path, out: Path, r: int, alpha: int, targets: list[str], seed: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto", local_files_only=True)
    modules: list[str] | str = "all-linear" if targets == ["all-linear"] else targets  # peft's every linear layer
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=modules, init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(str(out))


def _tiny_model(out: Path, dtype: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=64, max_position_embeddings=128, tie_word_embeddings=True)
    LlamaForCausalLM(config).to(getattr(torch, dtype)).save_pretrained(out)
    (out / "tokenizer.json").write_text(
        "{}", encoding="utf-8"
    )  # a placeholder: detection wants a tokenizer, the merge copies it


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.testing.adapters")
    commands = parser.add_subparsers(dest="command", required=True)
    lora = commands.add_parser("lora")
    lora.add_argument("base", type=Path)
    lora.add_argument("out", type=Path)
    lora.add_argument("--r", type=int, default=4)
    lora.add_argument("--alpha", type=int, default=1)
    lora.add_argument("--targets", default="q_proj,v_proj")
    lora.add_argument("--seed", type=int, default=0)
    tiny = commands.add_parser("tiny-model")
    tiny.add_argument("out", type=Path)
    tiny.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args(argv)
    if args.command == "lora":
        _lora(args.base, args.out, args.r, args.alpha, args.targets.split(","), args.seed)
    else:
        _tiny_model(args.out, args.dtype)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
