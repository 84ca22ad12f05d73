"""A peft adapter as fine-tuning runs save it (``adapter_config.json`` and ``adapter_model.safetensors``): read,
checked against its base model, and where its base is named.

Everything here reads small files (the adapter's config, the safetensors headers of the adapter and of its base, a
GGUF's header), so it runs at session start, before the merge (``harness.preparation.merge``) and the build. torch,
transformers and peft are not imported: the merge imports them, in a child process.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.capacity.model_facts import model_facts, weight_shapes
from harness.errors import SourceError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# peft 0.21.2's methods whose layers merge into the base's weights (``merge_and_unload``): every PeftType but the
# prompt-learning ones (their virtual tokens are not weights), POLY and XLORA (routers over several adapters) and
# LILY and SHADOW (whose merge raises NotImplementedError). tests/unit/test_adapters.py checks this against peft.
MERGEABLE = ("LORA", "ADALORA", "ADAMSS", "BOFT", "BEFT", "C3A", "DEFT", "DELORA", "FOURIERFT", "FROD", "GLORA",
             "GRALORA", "HIRA", "HRA", "IA3", "LN_TUNING", "LOHA", "LOKR", "MISS", "OFT", "OSF", "PEANUT", "PSOFT",
             "PVERA", "RANDLORA", "ROAD", "SHIRA", "SUPERTUNING", "TINYLORA", "TRAINABLE_TOKENS", "UNILORA", "VBLORA",
             "VERA", "WAVEFT")
PROMPT_LEARNING = ("PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "ADAPTION_PROMPT", "CPT",
                   "CARTRIDGE")
UNMERGEABLE = ("POLY", "XLORA", "LILY", "SHADOW")
# What a base model is named in adapter_config.json when it is on the Hugging Face hub: "name" or "owner/name".
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
# The layer index in a module's name (model.layers.12.self_attn.q_proj, transformer.h.3.attn.c_attn).
LAYER_INDEX = re.compile(r"\.(?:layers|layer|h|blocks|block)\.(\d+)\.")
PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class Adapter:
    path: Path
    peft_type: str
    base_name: str | None  # base_model_name_or_path, as saved
    weights: Path

    def lora_shapes(self) -> dict[str, tuple[int, int]]:
        """Each adapted module's (in_features, out_features), from a LoRA adapter's safetensors header (its lora_A
        is [r, in], its lora_B [out, r]); empty for other methods and .bin weights."""
        if self.weights.suffix != ".safetensors":
            return {}
        header = weight_shapes(self.weights)
        shapes: dict[str, tuple[int, int]] = {}
        for name, shape in header.items():
            module = name.removeprefix(PEFT_PREFIX)
            if module.endswith(".lora_A.weight") and len(shape) == 2:
                out = header.get(name.removesuffix(".lora_A.weight") + ".lora_B.weight", ())
                if len(out) == 2:
                    shapes[module.removesuffix(".lora_A.weight")] = (shape[1], out[0])
        return shapes


def _adapter_config(path: Path, where: str) -> Mapping[str, object]:
    file = path / ADAPTER_CONFIG
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{where}: {ADAPTER_CONFIG} cannot be read ({exc}); save the adapter again with "
                          "save_pretrained()") from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"{where}: {ADAPTER_CONFIG} is not valid JSON ({exc}); fix the file or save the adapter "
                          "again with save_pretrained()") from None
    if not isinstance(config, dict):
        raise SourceError(f"{where}: {ADAPTER_CONFIG} holds a {type(config).__name__}, not an object; fix the file "
                          "or save the adapter again with save_pretrained()")
    return config


def read_adapter(path: Path, where: str) -> Adapter:
    """The adapter folder's config and weights, checked to be an adapter peft can merge; a one-line SourceError
    otherwise."""
    config = _adapter_config(path, where)
    peft_type = config.get("peft_type")
    if not isinstance(peft_type, str) or not peft_type:
        raise SourceError(f"{where}: {ADAPTER_CONFIG} has no peft_type (LORA, ...), so it is not a peft adapter's "
                          "config; save the adapter with save_pretrained()")
    if peft_type not in MERGEABLE:
        why = ("a prompt-learning method: its virtual tokens are no weights to merge" if peft_type in PROMPT_LEARNING
               else "peft cannot merge it" if peft_type in UNMERGEABLE else "not a method peft 0.21.2 knows")
        raise SourceError(f"{where}: {ADAPTER_CONFIG}: peft_type {peft_type} cannot be merged into the base model "
                          f"({why}); the harness validates the merged model a deployment ships, so pass a LoRA (or "
                          "another mergeable) adapter, or the merged model's folder")
    task = config.get("task_type")
    if task not in (None, "CAUSAL_LM"):
        raise SourceError(f"{where}: {ADAPTER_CONFIG}: task_type {task} is not CAUSAL_LM; the harness validates "
                          "causal language models (an adapter trained with task_type=CAUSAL_LM)")
    base = config.get("base_model_name_or_path")
    if base is not None and not isinstance(base, str):
        raise SourceError(f"{where}: {ADAPTER_CONFIG}: base_model_name_or_path is a {type(base).__name__}, not a "
                          "string; fix the file, or pass the base model with --base-model=PATH")
    weights = next((path / name for name in ADAPTER_WEIGHTS if (path / name).is_file()), None)
    if weights is None:
        raise SourceError(f"{where}: a peft adapter folder without adapter_model.safetensors (its weights); save the "
                          "adapter with save_pretrained() into it")
    adapter = Adapter(path, peft_type, base or None, weights)
    adapter.lora_shapes()  # a header that does not read is one line here, not in the merge
    return adapter


def base_named_by(adapter: Adapter, where: str) -> Path:
    """The base model the adapter's config names, when it is a path on this machine (a relative one from the current
    folder, as peft reads it); a one-line SourceError naming --base-model otherwise."""
    name = adapter.base_name
    fix = "pass the model it was fine-tuned from with --base-model=PATH (a Hugging Face folder or a GGUF file)"
    if name is None:
        raise SourceError(f"{where}: a peft adapter whose {ADAPTER_CONFIG} names no base model "
                          f"(base_model_name_or_path is empty); {fix}")
    path = Path(name).expanduser()
    if path.exists():
        return path.resolve()
    if not path.is_absolute() and not name.startswith(".") and HUB_ID.fullmatch(name):
        raise SourceError(f"{where}: the adapter's base model is {name!r} on the Hugging Face hub "
                          f"(base_model_name_or_path in {ADAPTER_CONFIG}), and the harness reads local files only; "
                          f"download it, then {fix}")
    raise SourceError(f"{where}: the adapter's base model {name} (base_model_name_or_path in {ADAPTER_CONFIG}) is "
                      f"not on this machine; {fix}")


def check_fits_base(adapter: Adapter, base: Path, where: str) -> None:
    """A LoRA adapter's modules fit the base model: each one the base has a weight of that name for has its shape,
    none sits in a layer the base does not have, and (where no name matches: a GGUF base, or another naming) each
    width is one of the base's. What cannot be read cheaply is left to the merge, whose failure names its log."""
    shapes = adapter.lora_shapes()
    if not shapes:
        return
    base_shapes = weight_shapes(base)
    if not base_shapes:
        return
    layers = model_facts(base).num_layers
    fix = f"an adapter merges into the model it was fine-tuned from, and {base} is not it: pass that with --base-model"
    found = 0
    for module, (inputs, outputs) in sorted(shapes.items()):
        weight = base_shapes.get(f"{module}.weight")
        if weight is not None:
            found += 1
            if list(weight) not in ([outputs, inputs], [inputs, outputs]):
                raise SourceError(f"{where}: the adapter's {module} maps {inputs} to {outputs} features, and the base "
                                  f"model's weight of that name is {list(weight)}; {fix}")
            continue
        index = LAYER_INDEX.search(f".{module}.")
        if layers and index is not None and int(index.group(1)) >= layers:
            raise SourceError(f"{where}: the adapter adapts {module}, in layer {index.group(1)}, and the base model "
                              f"has {layers} layers; {fix}")
    if found:
        return
    widths = {dim for shape in base_shapes.values() for dim in shape}
    for module, (inputs, outputs) in sorted(shapes.items()):
        odd = [width for width in (inputs, outputs) if width not in widths]
        if odd:
            raise SourceError(f"{where}: the adapter's {module} maps {inputs} to {outputs} features, and no weight of "
                              f"the base model has a dimension of {odd[0]}; {fix}")
