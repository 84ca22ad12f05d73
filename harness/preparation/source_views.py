"""What a Hugging Face folder needs before the onnxruntime-genai 0.18 model builder can build it right.

The user's folder is never modified. Two known gaps of the 0.18 builder are bridged here, from ``config.json``
alone (plain JSON: transformers stays out of the pytest process):

* **Gemma 3's RoPE (a config view).** transformers 5 writes ``rope_parameters`` per attention type
  (``{"full_attention": {...}, "sliding_attention": {...}}``); the builder reads a flat dict, fails with
  ``KeyError: 'rope_type'``, and without ``rope_theta`` would silently use theta 10000 on the global layers. The view
  is a folder of hard links to the source's files with a ``config.json`` whose ``rope_parameters`` keeps the nested
  form (transformers reads it back unchanged) and adds the full-attention layers' flat parameters and
  ``rope_local_base_freq`` (the sliding layers' theta), which the builder copies onto its config. Exact when both
  attention types use plain RoPE (Gemma 3 270M and 1B); a scaled global RoPE (the 4B+ ``linear`` factor 8) is
  refused, because the builder would apply the factor to the sliding layers' cache too.
* **Sliding-window attention (a builder option).** With the builder's default windowed KV cache, the 0.18 runtime
  sizes the local layers' cache from ``max_length`` and refuses any generation shorter than the window
  (``KV cache capacity (N) must be at least local_window_size (W)``): Gemma 2 and 3 and gpt-oss fail nearly every
  short request. ``windowed_kv_cache=false`` gives those layers full-length caches; attention stays windowed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import BuildError
from harness.fsutil import link_or_copy

# Part of the builders' cache key: bump when what is adapted, or how, changes.
ADAPTATIONS_VERSION = "1"
GEMMA3 = "Gemma3ForCausalLM"
GEMMA3_LEGACY_KEYS = ("rope_scaling", "rope_theta", "rope_local_base_freq")
# transformers' Gemma3TextConfig defaults, used when config.json leaves them out.
GEMMA3_DEFAULT_THETA = {"full_attention": 1_000_000.0, "sliding_attention": 10_000.0}
UNWINDOWED_KV = "windowed_kv_cache=false"
UPSTREAM = "microsoft/onnxruntime-genai"


@dataclass(frozen=True)
class Adaptations:
    """What the build of one folder needs: a config view of it, and builder options."""

    config_view: dict[str, Any] | None = None  # the view's config.json, None when the folder builds as it is
    extra_options: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        return ([f"a Gemma 3 RoPE config view ({UPSTREAM} 0.18 reads a flat rope_parameters)"]
                if self.config_view is not None else []) + [
            f"{option} (the 0.18 runtime refuses windowed caches shorter than the window)"
            for option in self.extra_options]


def read_config(hf_folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((hf_folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BuildError(f"{hf_folder / 'config.json'} cannot be read ({exc}); fix the file") from None
    if not isinstance(config, dict):
        raise BuildError(f"{hf_folder / 'config.json'} is not a JSON object; fix the file")
    return config


def adaptations(config: dict[str, Any], user_options: tuple[str, ...] = (), with_options: bool = True) -> Adaptations:
    """What the builder needs for a folder with this ``config.json``; options only ``with_options`` (a builder that
    takes them), and never one the user set."""
    view = gemma3_view(config) if GEMMA3 in (config.get("architectures") or []) else None
    options: tuple[str, ...] = ()
    user_keys = {option.split("=", 1)[0] for option in user_options}
    if with_options and has_sliding_window(config) and "windowed_kv_cache" not in user_keys:
        options = (UNWINDOWED_KV,)
    return Adaptations(view, options)


def has_sliding_window(config: dict[str, Any]) -> bool:
    """Layers the builder marks local: ``layer_types`` naming sliding attention. (Mistral's ``sliding_window``
    without ``layer_types`` marks none: the builder ignores that window.)"""
    layer_types = config.get("layer_types") or []
    return isinstance(layer_types, list) and "sliding_attention" in layer_types and bool(config.get("sliding_window"))


def gemma3_rope(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The RoPE of each attention type as transformers 5 reads this config: the nested ``rope_parameters`` a
    transformers-5 save writes, or the legacy keys (``rope_theta``, ``rope_local_base_freq``, ``rope_scaling``) of
    the hub's configs and of older saves."""
    nested = config.get("rope_parameters")
    if isinstance(nested, dict) and isinstance(nested.get("full_attention"), dict) \
            and isinstance(nested.get("sliding_attention"), dict):
        return {kind: dict(nested[kind]) for kind in GEMMA3_DEFAULT_THETA}
    scaling = config.get("rope_scaling") or {}
    full = {**scaling, "rope_type": scaling.get("rope_type", scaling.get("type", "default")),
            "rope_theta": config.get("rope_theta", GEMMA3_DEFAULT_THETA["full_attention"])}
    full.pop("type", None)
    sliding = {"rope_type": "default",
               "rope_theta": config.get("rope_local_base_freq", GEMMA3_DEFAULT_THETA["sliding_attention"])}
    return {"full_attention": full, "sliding_attention": sliding}


def gemma3_view(config: dict[str, Any]) -> dict[str, Any]:
    """The view's config.json, or BuildError when the builder cannot express this RoPE."""
    rope = gemma3_rope(config)
    for kind, parameters in rope.items():
        rope_type = parameters.get("rope_type", "default")
        if rope_type != "default":
            raise BuildError(
                f"Gemma 3 with {rope_type!r} RoPE on its {kind.replace('_', ' ')} layers cannot be built by the "
                f"onnxruntime-genai 0.18 model builder (it would apply that scaling to the sliding layers' cache "
                f"too; owner: {UPSTREAM}); build it with a fixed builder and pass the folder as --model")
    view = {key: value for key, value in config.items() if key not in GEMMA3_LEGACY_KEYS}
    view["rope_parameters"] = {**rope, **rope["full_attention"],
                               "rope_local_base_freq": rope["sliding_attention"]["rope_theta"]}
    return view


def write_view(hf_folder: Path, view_config: dict[str, Any], out: Path) -> Path:
    """``out``: the folder's files, linked (copied where links fail), with the view's config.json."""
    out.mkdir(parents=True)
    for entry in hf_folder.iterdir():
        if entry.name != "config.json" and entry.is_file():
            link_or_copy(entry, out / entry.name)
    (out / "config.json").write_text(json.dumps(view_config, indent=2) + "\n", encoding="utf-8")
    return out
