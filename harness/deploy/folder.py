"""The Foundry Local model folder: the built ONNX files plus an ``inference_model.json``.

Laid out as the deployment guide does, ``<root>/models/custom/<name>/``. The PromptTemplate is
derived from the model's own chat template; a user's own file (``--inference-config``) is
validated by the suites and copied as is, never rewritten.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.deploy.templates import PromptTemplate, TemplateError, derive_prompt_template, jinja_renderer
from harness.errors import ConfigError, HarnessError
from harness.fsutil import link_or_copy
from harness.locations import data_dir
from harness.preparation.cache import MANIFEST
from harness.runtime.genai import read_chat_template

INFERENCE_MODEL = "inference_model.json"
MODEL_CONFIG_KEYS = {"max_length": int, "temperature": float, "top_p": float, "repetition_penalty": float}


@dataclass(frozen=True)
class Deployment:
    folder: Path  # .../models/custom/<name>
    document: dict[str, Any]  # the inference_model.json content

    @property
    def template(self) -> PromptTemplate | None:
        entries = self.document.get("PromptTemplate")
        try:
            return PromptTemplate.from_json(entries) if isinstance(entries, dict) else None
        except KeyError:
            return None


def chat_template_text(model: Path) -> str:
    template = read_chat_template(model)
    if template is None:
        raise TemplateError(
            f"{model} has no chat template (chat_template.jinja or tokenizer_config.json); "
            "add one, or give your own inference_model.json with --inference-config"
        )
    return template


def check_chat_template(model: Path) -> None:
    """The model's chat template renders a one-message conversation, as every chat check needs (a base model has no
    template to check); raises TemplateError."""
    template = read_chat_template(model)
    if template is not None:
        jinja_renderer(template, *template_tokens(model))([{"role": "user", "content": "Hello"}], True)


def template_tokens(model: Path) -> tuple[str, str]:
    """``bos_token`` and ``eos_token`` as the tokenizer config spells them (templates may use them)."""
    path = model / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def spelled(value: object) -> str:
        if isinstance(value, dict):
            value = value.get("content")
        return value if isinstance(value, str) else ""

    return spelled(config.get("bos_token")), spelled(config.get("eos_token"))


def model_config(genai_config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """ModelConfig from the model's own search defaults, capped to its context, then overrides."""
    search = genai_config.get("search", {})
    try:
        context = int(genai_config["model"]["context_length"])
        config: dict[str, Any] = {
            "max_length": min(int(search.get("max_length", context)), context),
            "temperature": float(search.get("temperature", 1.0)),
            "top_p": float(search.get("top_p", 1.0)),
            "repetition_penalty": float(search.get("repetition_penalty", 1.0)),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"genai_config.json lacks a usable model.context_length or search "
                           f"defaults ({exc!r}); rebuild the model or fix the file") from exc
    for key, value in overrides.items():
        kind = MODEL_CONFIG_KEYS.get(key)
        if kind is None:
            raise ConfigError(f"unknown ModelConfig key {key!r} in [tool.harness.model_config]; "
                              f"known keys: {', '.join(MODEL_CONFIG_KEYS)}")
        try:
            config[key] = kind(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[tool.harness.model_config] {key} = {value!r} is not "
                              f"{'an integer' if kind is int else 'a number'}") from exc
    return config


def build_document(model: Path, name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    genai_config = json.loads((model / "genai_config.json").read_text(encoding="utf-8"))
    template = derive_prompt_template(jinja_renderer(chat_template_text(model), *template_tokens(model)))
    return {
        "Name": name,
        "Description": f"{name}, built and validated by onnx-slm-harness",
        "Version": "1",
        "PromptTemplate": template.as_json(),
        "ModelConfig": model_config(genai_config, overrides),
    }


def load_user_document(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path} is not valid JSON ({exc}); fix the file") from exc
    if not isinstance(document, dict):
        raise HarnessError(f"{path} must hold a JSON object, not {type(document).__name__}")
    return document


def check_user_document(path: Path) -> None:
    """``--inference-config``'s file, read and checked against the schema at start: a file of the wrong shape is a
    bad input in one line, not dozens of template checks failing on it."""
    try:
        errors = schema_errors(load_user_document(path))
    except HarnessError as exc:
        raise ConfigError(f"--inference-config {exc}") from None
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"--inference-config {path} does not follow the inference_model.json schema: {errors[0]}"
                          f"{more}; fix the file (schema: fixtures/schemas/inference_model.schema.json)")


def write_deployment(model: Path, root: Path, name: str, document: dict[str, Any]) -> Deployment:
    """The model's files (hard links) and ``inference_model.json`` in ``root/models/custom/<name>/``; a ModelConfig
    max_length below the model's context goes into the folder's genai_config.json too (a copy): Foundry Local 2.2 reads
    that file, and reserves the KV cache of its ``model.context_length`` for every chat."""
    folder = root / "models" / "custom" / name
    max_length = document.get("ModelConfig", {}).get("max_length") if isinstance(document.get("ModelConfig"),
                                                                                 dict) else None
    copy_with_max_length(model, folder, max_length if isinstance(max_length, int) else None)
    (folder / INFERENCE_MODEL).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return Deployment(folder, document)


def copy_with_max_length(model: Path, folder: Path, max_length: int | None) -> Path:
    """The model's files linked into ``folder`` (an earlier copy there goes), its genai_config.json rewritten with
    ``model.context_length`` and ``search.max_length`` at most ``max_length`` (None, or a larger one: linked as is)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    config_path = model / "genai_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    settings = config.get("model") if isinstance(config, dict) else None
    context = settings.get("context_length") if isinstance(settings, dict) else None
    lower = max_length is not None and max_length > 0 and isinstance(context, int) and max_length < context
    for item in model.iterdir():
        if item.is_file() and item.name not in (MANIFEST, INFERENCE_MODEL) and not (lower and item == config_path):
            link_or_copy(item, folder / item.name)
    if lower:
        assert isinstance(settings, dict) and max_length is not None
        settings["context_length"] = max_length
        search = config.setdefault("search", {})
        search["max_length"] = min(int(search.get("max_length", max_length)), max_length)
        (folder / "genai_config.json").write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
    return folder


def schema_errors(document: object) -> list[str]:
    """Schema violations, each naming the field path (e.g. ``PromptTemplate.user: ...``)."""
    from jsonschema import Draft202012Validator

    schema = json.loads((data_dir() / "schemas" / "inference_model.schema.json").read_text(encoding="utf-8"))
    errors = sorted(Draft202012Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    return [f"{'.'.join(map(str, error.path)) or '(top level)'}: {error.message}" for error in errors]
