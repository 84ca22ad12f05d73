"""GGUF -> Hugging Face folder, so Olive and the model builder can read a GGUF source.

Runs as ``python -m harness.preparation.convert GGUF OUT`` in a child process: torch and transformers stay out
of the pytest process, whose memory the suites measure.

The tensors stream: each is read from the memory-mapped GGUF, dequantized and renamed by transformers' own GGUF
support (its tensor processors and name map, the code ``from_pretrained(gguf_file=...)`` runs), and written into
safetensors shards of at most ``SHARD_BYTES``, so the conversion holds one shard and one tensor at a time whatever
the model's size. Loading the whole model (``from_pretrained``), then copying it into a plain model to save it,
held several fp32 copies: Qwen2.5-Coder-0.5B's conversion peaked at 5230 MiB that way, 2169 MiB streamed (the same
tensors, bit for bit; ``/proc`` RSS of the process, polled). The weights are written in fp32, the exact value of
every dequantized weight.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from harness.preparation.optional import GGUF_MODULES, child_main, require

SHARD_BYTES = 256 * 1024**2
ROWS_PER_CHUNK = 4096  # rows dequantized at a time: gguf's dequantization makes temporaries several times its output
INDEX = "model.safetensors.index.json"


def dequantize_rows(data: Any, qtype: Any, rows: int = ROWS_PER_CHUNK) -> Any:
    """A GGUF tensor as fp32, dequantized ``rows`` rows at a time into one array (a quantized tensor's data is one
    row of blocks per output row)."""
    import numpy as np
    from gguf import dequantize

    if data.ndim < 2 or data.shape[0] <= rows:
        return np.array(dequantize(data, qtype), dtype=np.float32)  # a copy: the data is the read-only file map
    first = dequantize(data[:rows], qtype)
    out = np.empty((data.shape[0], *first.shape[1:]), dtype=np.float32)
    out[:rows] = first
    for start in range(rows, data.shape[0], rows):
        out[start:start + rows] = dequantize(data[start:start + rows], qtype)
    return out


class ShardWriter:
    """safetensors shards of at most ``limit`` bytes (one tensor may exceed it), and their index, as
    ``save_pretrained`` writes a sharded checkpoint."""

    def __init__(self, out: Path, limit: int = SHARD_BYTES) -> None:
        self.out, self.limit = out, limit
        self.pending: dict[str, Any] = {}
        self.pending_bytes = 0
        self.shards: list[list[str]] = []  # the tensor names of each shard written
        self.total_bytes = 0

    def add(self, name: str, tensor: Any) -> None:
        """Queue ``tensor``; a full shard is written at once, so at most one shard's tensors are held."""
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.limit:
            self.flush()
        self.pending[name] = tensor.contiguous()
        self.pending_bytes += size
        self.total_bytes += size
        if self.pending_bytes >= self.limit:
            self.flush()

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self.pending:
            return
        save_file(self.pending, str(self.out / f"shard-{len(self.shards)}.safetensors"), metadata={"format": "pt"})
        self.shards.append(list(self.pending))
        self.pending, self.pending_bytes = {}, 0

    def close(self) -> list[str]:
        """Write the last shard, give the shards their final names and write the index; the names written."""
        self.flush()
        count = len(self.shards)
        weight_map: dict[str, str] = {}
        for index, names in enumerate(self.shards):
            final = "model.safetensors" if count == 1 else f"model-{index + 1:05d}-of-{count:05d}.safetensors"
            (self.out / f"shard-{index}.safetensors").rename(self.out / final)
            weight_map.update(dict.fromkeys(names, final))
        if count > 1:
            index_file = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
            (self.out / INDEX).write_text(json.dumps(index_file, indent=2), encoding="utf-8")
        return list(weight_map)


def convert_gguf(gguf: Path, out: Path, shard_bytes: int = SHARD_BYTES) -> None:
    require(f"converting {gguf} (a GGUF) to a Hugging Face folder", GGUF_MODULES)
    import numpy as np
    import torch
    from gguf import GGUFReader
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        load_gguf_checkpoint,
        read_field,
    )

    folder, name = str(gguf.parent), gguf.name
    print(f"reading {gguf}", flush=True)
    AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    with torch.device("meta"):  # names and shapes only: no weights are allocated
        skeleton = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    config.architectures = [type(skeleton).__name__]  # what the builders dispatch on
    parsed = load_gguf_checkpoint(str(gguf), return_tensors=False)  # type: ignore[no-untyped-call]
    reader = GGUFReader(str(gguf))
    architecture = read_field(reader, "general.architecture")[0]  # type: ignore[no-untyped-call]
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=parsed["config"])  # type: ignore[no-untyped-call]
    mapping = get_gguf_hf_weights_map(skeleton, processor)
    parsed["tensors"] = {}  # where the processors of split tensors (mixtures of experts) put their pieces

    writer = ShardWriter(out, shard_bytes)
    for tensor in reader.tensors:
        result = processor.process(  # type: ignore[no-untyped-call]
            weights=dequantize_rows(tensor.data, tensor.tensor_type), name=tensor.name, tensor_key_mapping=mapping,
            parsed_parameters=parsed)
        if result.name in mapping:
            writer.add(mapping[result.name], torch.from_numpy(np.ascontiguousarray(result.weights, dtype=np.float32)))
        for split_name, split in parsed["tensors"].items():
            writer.add(split_name, split.to(torch.float32))
        parsed["tensors"].clear()
    written = set(writer.close())
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = sorted(set(skeleton.state_dict()) - written - tied)
    if missing:
        raise SystemExit(f"the GGUF has no tensor for {len(missing)} of the model's weights "
                         f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): cannot convert it")
    config.save_pretrained(out)
    if skeleton.generation_config is not None:
        GenerationConfig.from_model_config(config).save_pretrained(out)
    print(f"saved Hugging Face folder to {out}: {len(written)} tensors, {writer.total_bytes / 1e6:.0f} MB "
          f"in {len(writer.shards)} shard(s)", flush=True)


def main(argv: list[str]) -> int:
    return child_main(argv, "python -m harness.preparation.convert MODEL.gguf OUT_FOLDER", convert_gguf, paths=2)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
