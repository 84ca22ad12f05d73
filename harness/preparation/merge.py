"""A peft adapter merged into its base model: a Hugging Face folder the builders read like any other.

Runs as ``python -m harness.preparation.merge BASE_FOLDER ADAPTER_FOLDER OUT`` in a child process, as the GGUF
conversion does: torch, transformers and peft stay out of the pytest process, whose memory the suites measure.

The merge is peft's own: ``PeftModel.from_pretrained(base, adapter).merge_and_unload()``, the base loaded at the dtype
it is saved in (``dtype="auto"``: its config's, else its weights'), so the merged model keeps that dtype. It is saved
with ``save_pretrained`` as safetensors shards of at most ``SHARD_SIZE`` (each shard's tensors are copied while it is
written: a bound on what the save adds to the loaded model), with the tokenizer and chat template of the adapter
folder when it has a tokenizer (a fine-tune that added tokens or changed the template saves them there), else the
base's.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from harness.preparation.optional import MERGE_MODULES, child_main, require

SHARD_SIZE = "256MB"
# What a tokenizer is saved as (any of them: the folder has a tokenizer), and what goes with it.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
TOKENIZER_EXTRAS = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "merges.txt",
                    "chat_template.jinja", "chat_template.json")
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def tokenizer_files(base: Path, adapter: Path) -> list[Path]:
    """The tokenizer and chat template files the merged folder takes: the adapter folder's when it holds a tokenizer,
    else the base's, with a chat template the adapter folder holds alone in place of the base's."""
    if any((adapter / name).is_file() for name in TOKENIZER_FILES):
        return [adapter / name for name in (*TOKENIZER_FILES, *TOKENIZER_EXTRAS) if (adapter / name).is_file()]
    own_template = [adapter / name for name in TEMPLATE_FILES if (adapter / name).is_file()]
    taken = [base / name for name in (*TOKENIZER_FILES, *TOKENIZER_EXTRAS) if (base / name).is_file()
             and not (own_template and name in TEMPLATE_FILES)]
    return [*taken, *own_template]


def merge(base: Path, adapter: Path, out: Path) -> None:
    require(f"merging the adapter {adapter} into its base model", MERGE_MODULES)
    import peft
    import torch
    import transformers
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    print(f"peft {peft.__version__}, transformers {transformers.__version__}, torch {torch.__version__}", flush=True)
    print(f"loading the base model {base}", flush=True)
    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto", local_files_only=True)
    dtype = model.dtype
    print(f"loading the adapter {adapter} (base dtype {dtype})", flush=True)
    with_adapter = PeftModel.from_pretrained(model, adapter, is_trainable=False, local_files_only=True)
    print(f"merging {with_adapter.peft_config['default'].peft_type} into the base", flush=True)
    merged = with_adapter.merge_and_unload()
    if merged.dtype != dtype:  # never seen: peft merges each delta at its weight's dtype
        raise SystemExit(f"the merged model is {merged.dtype}, not the base's {dtype}")
    merged.save_pretrained(out, safe_serialization=True, max_shard_size=SHARD_SIZE)
    files = tokenizer_files(base, adapter)
    for path in files:
        shutil.copy2(path, out / path.name)
    whose = "the adapter's" if any(path.parent == adapter for path in files) else "the base's"
    print(f"saved the merged model ({dtype}) with {whose} tokenizer files to {out}", flush=True)


def main(argv: list[str]) -> int:
    return child_main(argv, "python -m harness.preparation.merge BASE_FOLDER ADAPTER_FOLDER OUT_FOLDER", merge, paths=3)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
