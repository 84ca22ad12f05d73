"""Foundry Local (foundry-local-sdk, in-process, offline) running the built model as a local model.

A ``FoundryLocalSession`` registers the model folder (as is: Foundry rejects a symlinked
``model.onnx.data``) in a private model cache, loads it, answers chats greedily, and on exit unloads,
unregisters and closes the manager, so no registration outlives it. The SDK is imported lazily:
importing this module is cheap and works where the SDK is not installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

import yaml

from harness.capacity.model_facts import model_facts
from harness.config.gates import Gate
from harness.deploy.folder import copy_with_max_length
from harness.errors import HarnessError, RuntimeFailure
from harness.locations import data_dir
from harness.offline import disable_telemetry
from harness.runtime.protocol import Generation, Message
from harness.text import first_difference

if TYPE_CHECKING:
    from harness.config.gates import Gates

GATES: tuple[Gate, ...] = (
    Gate("foundry_kv_cache_gib_max", 2.0, "max", " GiB",
         "KV cache Foundry Local reserves for each chat of the deployment: model.context_length in its "
         "genai_config.json times the bytes of a token's keys and values (fp32 on CPU), a quarter of the 8 GB (taken "
         "as GiB) the deployment guide's readers have. Measured: the default model 0.35 GiB (8,192 x 45 KiB), "
         "Qwen2.5-0.5B 0.75 GiB (32,768 x 24 KiB), the default model at a 131,072 context 5.6 GiB (a chat took 11 s, "
         "0.3 s with a 1,024 context)", "(0, inf)"),
)
APP_NAME = "onnx-slm-harness"
REGISTRY_FILE = "foundry.local.modelinfo.json"  # where the SDK keeps a cache dir's registrations
TWIN_MODEL_ID = "harness-model-fp32-compute:1"


class FoundryUnavailable(HarnessError):
    """The Foundry Local SDK cannot be used on this machine."""


@dataclass(frozen=True)
class FoundryAnswer:
    text: str
    finish_reason: str  # "stop" (end of turn), "length" (max_output_tokens hit), or another lower-case reason
    prompt_tokens: int
    completion_tokens: int  # excludes the end-of-turn token


ChatAnswers = dict[tuple[str, str], FoundryAnswer | HarnessError]  # (model id, chat id) -> answer, or its error


def _sdk() -> ModuleType:
    # Its telemetry reads its switches once, when the manager initializes (``harness.offline``); the plugin has set
    # them already, this covers a session used outside pytest.
    disable_telemetry()
    # The SDK preloads its own libonnxruntime-genai.so (onnxruntime-genai-core 0.18.0) with RTLD_GLOBAL.
    # The harness runs the same version (0.18.0), so either may load first (with 0.14.1 beside it, the
    # later `import onnxruntime_genai` bound to the SDK's library and failed on a missing symbol).
    try:
        import foundry_local_sdk
    except (ImportError, OSError) as exc:
        raise FoundryUnavailable(
            f"Foundry Local is not available here: foundry-local-sdk cannot be imported ({exc}); "
            "this project installs it where its wheels exist (Windows x64 and arm64, macOS arm64, Linux x86-64 and "
            "aarch64 with glibc 2.34+): pip install foundry-local-sdk==2.2.1") from exc
    return foundry_local_sdk


@contextmanager
def _translated(context: str) -> Iterator[None]:
    """Turn the SDK's errors into a one-line ``RuntimeFailure`` that keeps the original message."""
    try:
        yield
    except HarnessError:
        raise
    except Exception as exc:  # FoundryLocalException, or RuntimeError from a closed manager
        message = " ".join(str(exc).split())
        raise RuntimeFailure(f"Foundry Local: {context}: {message}", str(exc)) from exc


def registered_model_ids(cache_dir: Path) -> list[str]:
    """The ids registered in a Foundry Local model cache dir, read from its registration file."""
    registry = cache_dir / REGISTRY_FILE
    if not registry.is_file():
        return []
    return [entry["model_info"]["id"] for entry in json.loads(registry.read_text(encoding="utf-8"))["models"]]


class FoundryLocalSession:
    """One Foundry Local manager with ``model_folder`` registered as ``model_id`` (``name:version``), and
    ``twin_folder`` (the fp32-compute twin) as ``TWIN_MODEL_ID`` when given.

    Foundry Local reserves the KV cache of the model's ``context_length`` for every chat (a 128k context is 5.6 GiB for
    the default model's shape, and a chat took 11 s instead of 0.3): with ``max_length``, each folder is registered as
    a copy whose genai_config.json holds at most that (the files linked), which answers alike and costs what the
    chats need."""

    def __init__(self, model_folder: Path, cache_dir: Path, model_id: str = "harness-model:1",
                 twin_folder: Path | None = None, max_length: int | None = None) -> None:
        self.model_folder = model_folder
        self.cache_dir = cache_dir
        self.model_id = model_id
        folders = {model_id: model_folder, **({TWIN_MODEL_ID: twin_folder} if twin_folder else {})}
        if max_length is not None:
            folders = {key: copy_with_max_length(folder, cache_dir / "registered" / key.replace(":", "-"), max_length)
                       for key, folder in folders.items()}
        self.folders = folders
        self._manager: Any = None
        self._catalog: Any = None
        self._models: dict[str, Any] = {}  # registered id -> the SDK's model

    def __enter__(self) -> FoundryLocalSession:
        sdk = _sdk()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with _translated("starting the manager"):
            sdk.FoundryLocalManager.initialize(sdk.Configuration(
                app_name=APP_NAME, model_cache_dir=str(self.cache_dir),
                app_data_dir=str(self.cache_dir / "appdata"), logs_dir=str(self.cache_dir / "logs"),
                log_level=sdk.LogLevel.WARNING, disable_nonessential_telemetry=True))
        self._manager = sdk.FoundryLocalManager.instance
        try:
            self._catalog = self._manager.get_catalog(sdk.CatalogType.LOCAL)  # never the public catalog
            for model_id, folder in self.folders.items():
                with _translated(f"registering {folder}"), sdk.ModelInfoBuilder() as metadata:
                    metadata.set_string_property("task", "chat-completion")
                    self._models[model_id] = self._catalog.register_model(
                        model_path=str(folder), model_id=model_id, metadata=metadata)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _registered(self, model_id: str | None = None) -> Any:
        model_id = model_id or self.model_id
        if model_id not in self._models:
            raise RuntimeFailure(f"Foundry Local: {model_id} is not registered; "
                                 "use the session inside its with block")
        return self._models[model_id]

    def listed_models(self) -> list[str]:
        """The ids Foundry lists as cached (what ``foundry cache ls`` prints)."""
        self._registered()
        with _translated("listing the cached models"):
            return [str(model.id) for model in self._catalog.get_cached_models()]

    def load(self, model_id: str | None = None) -> None:
        """Load ``model_id`` (default: every registered model)."""
        for loaded, folder in self.folders.items():
            if model_id in (None, loaded):
                with _translated(f"loading {folder}"):
                    self._registered(loaded).load()

    def unload(self, model_id: str) -> None:
        """Give ``model_id``'s memory back (it stays registered)."""
        with _translated(f"unloading {self.folders[model_id]}"):
            self._registered(model_id).unload()

    def chat(self, messages: Sequence[Message], max_output_tokens: int, model_id: str | None = None) -> FoundryAnswer:
        """Answer greedily (temperature 0) in a new chat session, so no earlier turn leaks in."""
        sdk = _sdk()
        model = self._registered(model_id)
        with _translated("answering"), sdk.ChatSession(model) as session, sdk.Request() as request:
            for message in messages:
                request.add_item(sdk.MessageItem(sdk.MessageRole[message["role"].upper()], message["content"]))
            request.set_options(sdk.RequestOptions(search=sdk.SearchOptions(
                temperature=0.0, max_output_tokens=max_output_tokens)))
            with session.process_request(request) as response:  # read it all before the block ends
                text = "".join(item.get_simple_text() for item in response if isinstance(item, sdk.MessageItem))
                usage = response.get_usage()
                return FoundryAnswer(text, response.finish_reason.name.lower(), usage.prompt_tokens,
                                     usage.completion_tokens)

    def answer_all(self, chats: Sequence[Mapping[str, Any]], max_output_tokens: int) -> ChatAnswers:
        """Every chat (``id`` and ``messages``) answered by each registered model, loaded one at a time: (model id,
        chat id) -> its answer, or the error it got (the check of that chat reports it)."""
        answers: ChatAnswers = {}
        for model_id in self.folders:
            self.load(model_id)
            for case in chats:
                try:
                    answers[model_id, case["id"]] = self.chat(case["messages"], max_output_tokens, model_id)
                except HarnessError as exc:  # the check of that chat reports it
                    answers[model_id, case["id"]] = exc
            self.unload(model_id)
        return answers

    def close(self) -> None:
        """Unload and unregister every model, then close the manager; safe to call twice. Every step runs even
        when an earlier one fails (the first failure is raised at the end), so no registration outlives it."""
        models, catalog, manager = self._models, self._catalog, self._manager
        self._models, self._catalog, self._manager = {}, None, None
        steps = [*((f"unloading {model_id}", model.unload) for model_id, model in models.items()),
                 *((f"unregistering {model_id}", lambda m=model: catalog.unregister_model(m.id))
                   for model_id, model in models.items())]
        failures: list[RuntimeFailure] = []
        for context, step in steps:
            try:
                with _translated(context):
                    step()
            except RuntimeFailure as exc:
                failures.append(exc)
        if manager is not None:
            manager.close()
        if failures:
            raise failures[0]


def compare_answers(direct: Generation, answer: FoundryAnswer, forbidden: Sequence[str]) -> list[str]:
    """What is wrong with Foundry's answer, judged against the direct onnxruntime-genai greedy run."""
    problems = []
    if not answer.text.strip():
        problems.append("Foundry's answer is empty")
    if answer.finish_reason != "stop":
        problems.append(f"Foundry finished by {answer.finish_reason!r} after {answer.completion_tokens} "
                        "tokens, not by its end-of-turn token ('stop')")
    leaked = [token for token in forbidden if token in answer.text]
    if leaked:
        problems.append(f"Foundry's answer contains control tokens {leaked}")
    if answer.prompt_tokens != direct.prompt_tokens:
        problems.append(f"the prompts differ: {answer.prompt_tokens} tokens in Foundry, "
                        f"{direct.prompt_tokens} in onnxruntime-genai (another chat template?)")
    if answer.text != direct.text:
        problems.append(f"the answers differ from character {first_difference(answer.text, direct.text)}")
    return problems


# -- the Foundry Local suite's steps ----------------------------------------------------------------------
def foundry_chats() -> list[dict[str, Any]]:
    """The chats the Foundry Local suite sends (fixtures/foundry_prompts.yaml), each an ``id`` and its ``messages``."""
    chats: list[dict[str, Any]] = yaml.safe_load((data_dir() / "foundry_prompts.yaml").read_text(encoding="utf-8"))
    return chats



def reserved_kv_cache(folder: Path, gates: Gates) -> tuple[float, str | None]:
    """The KV cache (GiB) Foundry Local reserves for each chat of the deployment in ``folder``, read from its
    genai_config.json as Foundry reads it, and the failure message when it is over ``foundry_kv_cache_gib_max``."""
    facts = model_facts(folder)  # its genai_config.json, as Foundry reads it
    reserved = facts.context_length * facts.kv_bytes_per_token / 1024**3
    if gates.check("foundry_kv_cache_gib_max", reserved):
        return reserved, None
    return reserved, (
        f"Foundry Local reserves {reserved:.1f} GiB of KV cache for each chat of this deployment: model.context_length "
        f"{facts.context_length} in its genai_config.json x {facts.kv_bytes_per_token / 1024:.0f} KiB a token "
        f"({facts.num_layers} layers of fp32 keys and values); {gates.describe('foundry_kv_cache_gib_max')}. "
        "Set max_length in [tool.harness.model_config] (or the ModelConfig of your inference_model.json) to the "
        "longest conversation your app holds: the deployment's genai_config.json takes it")
