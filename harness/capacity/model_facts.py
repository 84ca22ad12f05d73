"""What a model's size is, read from metadata alone: parameters, weight bytes, context, vocabulary, KV cache shape.

The memory plan predicts each phase's peak from these before anything is built or loaded, so they come from small
files: ``config.json`` and the safetensors headers of a Hugging Face folder, the header of a GGUF file,
``genai_config.json`` and the file sizes of a built onnxruntime-genai folder.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import SourceError

# Bytes per element of the dtypes safetensors headers name.
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}
KV_BYTES = 4  # the CPU models' KV cache is fp32 (int4, int8 and fp32 builds alike)
LOGIT_BYTES = 4  # and so are their logits


@dataclass(frozen=True)
class ModelFacts:
    kind: str  # "hf-folder", "gguf" or "onnx-genai"
    parameters: int | None  # stored parameters (tied embeddings once); None for a built ONNX model
    weight_bytes: int  # the weights as stored: safetensors or .bin files, the GGUF file, the ONNX files
    largest_tensor: int  # elements of the largest weight (what a streaming conversion holds at once)
    context_length: int
    vocab_size: int
    num_layers: int
    num_kv_heads: int
    head_size: int
    tied_embeddings: bool = True
    hidden_size: int = 0

    @property
    def kv_bytes_per_token(self) -> int:
        """Keys and values of every layer for one token, at the CPU models' fp32."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_size * KV_BYTES

    @property
    def logits_bytes_per_token(self) -> int:
        """One row of logits: onnxruntime-genai keeps a row per prompt token through the prefill."""
        return self.vocab_size * LOGIT_BYTES


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    nested = config.get("text_config")
    return {**config, **nested} if isinstance(nested, dict) else config


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: each tensor's dtype, shape and offsets (8 + header bytes read)."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 * 1024**2:
                raise ValueError(f"a header of {length} bytes")
            header = json.loads(handle.read(length))
            if not isinstance(header, dict) or not all(
                    isinstance(entry, dict) and isinstance(entry.get("shape"), list)
                    for name, entry in header.items() if name != "__metadata__"):
                raise ValueError("its header is not a table of tensors")
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path} is not a safetensors file ({exc}); save the model again with save_pretrained()"
                          ) from None
    header.pop("__metadata__", None)
    return header


def hf_folder_facts(folder: Path) -> ModelFacts:
    config = _text_config(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    parameters = largest = weight_bytes = 0
    shards = sorted(folder.glob("*.safetensors"))
    for shard in shards:
        weight_bytes += shard.stat().st_size
        for entry in safetensors_header(shard).values():
            count = 1
            for dim in entry["shape"]:
                count *= int(dim)
            parameters += count
            largest = max(largest, count)
    if not shards:  # pytorch_model*.bin: no header to read; its size over the config's dtype
        weight_bytes = sum(p.stat().st_size for p in folder.glob("pytorch_model*.bin"))
        itemsize = 2 if str(config.get("dtype", config.get("torch_dtype", ""))) in ("float16", "bfloat16") else 4
        parameters = weight_bytes // itemsize
        largest = int(config.get("vocab_size", 0)) * int(config.get("hidden_size", 0))
    heads = int(config.get("num_attention_heads", 1))
    hidden = int(config.get("hidden_size", 0))
    return ModelFacts(
        kind="hf-folder", parameters=parameters, weight_bytes=weight_bytes, largest_tensor=largest,
        context_length=int(config.get("max_position_embeddings", 0)), vocab_size=int(config.get("vocab_size", 0)),
        num_layers=int(config.get("num_hidden_layers", 0)),
        num_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_size=int(config.get("head_dim") or (hidden // heads if heads else 0)),
        tied_embeddings=bool(config.get("tie_word_embeddings", True)), hidden_size=hidden)


# GGUF value types (gguf.GGUFValueType) and the sizes of the fixed-size ones.
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


class _GGUFHeader:
    """The metadata and tensor shapes of a GGUF file, parsed from its header alone. ``gguf.GGUFReader`` builds an
    array for every field and took 6.7 s on Qwen2.5-Coder-0.5B's header; this reads it in a fraction of that."""

    def __init__(self, path: Path) -> None:
        try:
            self._parse(path)
        except (OSError, struct.error, KeyError, ValueError) as exc:
            raise SourceError(f"{path}: its GGUF header cannot be read ({exc}); the file is truncated or corrupt"
                              ) from None

    def _parse(self, path: Path) -> None:
        import mmap

        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            self._data, self._at = data, 0
            if data[:4] != b"GGUF":
                raise SourceError(f"{path}: not a GGUF file")
            self._at = 8  # magic and version
            tensors, fields = self._unpack("<Q"), self._unpack("<Q")
            self.fields: dict[str, Any] = {}
            for _ in range(fields):
                key = self._string()
                self.fields[key] = self._value(self._unpack("<I"))
            self.tensors: list[tuple[str, int]] = []  # (name, elements)
            self.shapes: dict[str, tuple[int, ...]] = {}  # name -> dimensions, innermost first (GGUF's order)
            for _ in range(tensors):
                name, dims = self._string(), self._unpack("<I")
                shape = tuple(int(self._unpack("<Q")) for _ in range(dims))
                count = 1
                for dim in shape:
                    count *= dim
                self._at += 12  # type and offset
                self.tensors.append((name, count))
                self.shapes[name] = shape
            del self._data

    def _unpack(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self._data, self._at)
        self._at += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        length = self._unpack("<Q")
        text = bytes(self._data[self._at:self._at + length]).decode("utf-8", "replace")
        self._at += length
        return text

    def _value(self, kind: int) -> Any:
        if kind == _GGUF_STRING:
            return self._string()
        if kind != _GGUF_ARRAY:
            return self._unpack(_GGUF_SCALARS[kind])
        item, count = self._unpack("<I"), self._unpack("<Q")
        if item == _GGUF_STRING:  # skipped: only the count matters (the tokenizer's vocabulary)
            for _ in range(count):
                length = self._unpack("<Q")  # read before adding: ``_at += _unpack()`` would lose the unpack's step
                self._at += length
        elif item == _GGUF_ARRAY:
            for _ in range(count):
                self._value(_GGUF_ARRAY)
        else:
            self._at += count * struct.calcsize(_GGUF_SCALARS[item])
        return [None] * count if item == _GGUF_STRING else count


def gguf_facts(path: Path) -> ModelFacts:
    header = _GGUFHeader(path)
    arch = str(header.fields.get("general.architecture", "llama"))

    def field(key: str, default: int = 0) -> int:
        value = header.fields.get(f"{arch}.{key}", default)
        return int(value) if isinstance(value, int | float) else default

    tokens = header.fields.get("tokenizer.ggml.tokens")
    counts = [count for _, count in header.tensors]
    heads, hidden = field("attention.head_count", 1), field("embedding_length")
    return ModelFacts(
        kind="gguf", parameters=sum(counts), weight_bytes=path.stat().st_size, largest_tensor=max(counts, default=0),
        context_length=field("context_length"), vocab_size=len(tokens) if isinstance(tokens, list) else 0,
        num_layers=field("block_count"), num_kv_heads=field("attention.head_count_kv", heads),
        head_size=field("attention.key_length", hidden // heads if heads else 0),
        tied_embeddings=all(name != "output.weight" for name, _ in header.tensors), hidden_size=hidden)


def genai_folder_facts(folder: Path) -> ModelFacts:
    model = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))["model"]
    decoder = model.get("decoder", {})
    weight_bytes = sum(p.stat().st_size for p in folder.iterdir() if p.name.endswith((".onnx", ".onnx.data")))
    try:  # the builders copy the source's config.json beside the model: whether its embeddings are tied
        tied = bool(_text_config(json.loads((folder / "config.json").read_text(encoding="utf-8")))
                    .get("tie_word_embeddings", True))
    except (OSError, ValueError, AttributeError):
        tied = True
    return ModelFacts(
        kind="onnx-genai", parameters=None, weight_bytes=weight_bytes, largest_tensor=0,
        context_length=int(model.get("context_length", 0)), vocab_size=int(model.get("vocab_size", 0)),
        num_layers=int(decoder.get("num_hidden_layers", 0)), num_kv_heads=int(decoder.get("num_key_value_heads", 0)),
        head_size=int(decoder.get("head_size", 0)), tied_embeddings=tied,
        hidden_size=int(decoder.get("hidden_size", 0)))


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each weight's shape, from metadata alone: a safetensors file's header, a Hugging Face folder's safetensors
    headers (empty for ``.bin`` weights) or a GGUF's header (its names and dimension order: GGUF's own)."""
    if path.is_file() and path.suffix != ".safetensors":
        return dict(_GGUFHeader(path).shapes)
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors"))
    return {name: tuple(int(dim) for dim in entry["shape"])
            for file in files for name, entry in safetensors_header(file).items()}


def model_facts(path: Path) -> ModelFacts:
    """The facts of a model source or built folder (see ``harness.preparation.sources`` for what is accepted); a config
    that cannot be read, or holds a field of the wrong type, is one line."""
    try:
        if path.is_file():
            return gguf_facts(path)
        if (path / "genai_config.json").is_file():
            return genai_folder_facts(path)
        return hf_folder_facts(path)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SourceError(f"{path}: its size cannot be read from its metadata ({type(exc).__name__}: {exc}); fix its "
                          "config.json (or genai_config.json), or save the model again") from None
