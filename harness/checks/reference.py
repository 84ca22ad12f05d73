"""The fp32 reference the parity suite compares a built model with: transformers on CPU.

The reference runs as ``python -m harness.checks.reference_child FOLDER OUT`` in a child process, so torch and
the fp32 weights stay out of the pytest process (whose memory other suites measure). It reads the
eval set as token ids from the *built* model's tokenizer (so both models read the same ids),
answers each prompt greedily, and keeps per scored position its top-K next-token log-probabilities.
The result is cached in the model store, keyed by the reference's content, the token ids and the
package versions: computed once, reused by every session and every precision.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from harness.checks.parity import ParityError, ReferenceData, ReferenceItem
from harness.locations import data_dir
from harness.preparation.buildlog import Progress, fail, run_logged
from harness.preparation.cache import ModelStore
from harness.preparation.hashing import HashMemo, combine, content_hash
from harness.preparation.optional import REFERENCE_ELSEWHERE, REFERENCE_MODULES, missing_reason, require
from harness.provenance import versions

if TYPE_CHECKING:
    from harness.runtime.protocol import Prompt, Runtime

TOP_K = 2048  # reference tokens kept per position: 99 % of the full KL at int4 on the default model
MAX_NEW_TOKENS = 48  # greedy answer length asked of both models
RECIPE_VERSION = "2"  # bump when what the child computes changes
REFERENCE_PACKAGES = ("transformers", "torch")
REQUEST, MANIFEST, ARRAYS = "request.json", "reference.json", "reference.npz"
EVAL_TEXT_SUFFIXES = (".txt", ".jsonl")
COMPUTING = "computing the reference model's answers (the parity and retention suites)"


# -- the eval set ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalText:
    id: str
    text: str


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    prompt: Prompt  # chat messages (rendered with the model's chat template) or a raw string


EvalItem = EvalText | EvalPrompt
CASE_PREFIX = "case-"  # the id of a case's prompt in the eval set: "case-<case id>"


@dataclass(frozen=True)
class EvalSet:
    texts: tuple[EvalText, ...]
    prompts: tuple[EvalPrompt, ...]

    @property
    def items(self) -> tuple[EvalItem, ...]:
        return (*self.texts, *self.prompts)

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    def raw_only(self) -> EvalSet:
        """Without the chat prompts: for a base model, which has no chat template to render them."""
        return EvalSet(self.texts, tuple(prompt for prompt in self.prompts if isinstance(prompt.prompt, str)))

    def with_prompts(self, extra: Sequence[EvalPrompt]) -> EvalSet:
        """This set plus extra prompts (for example a domain's cases); ids must stay unique."""
        merged = EvalSet(self.texts, (*self.prompts, *extra))
        duplicates = sorted({i for i in merged.ids if merged.ids.count(i) > 1})
        if duplicates:
            raise ParityError(f"eval item ids {duplicates} appear twice; give the extra prompts other ids")
        return merged


def eval_dir() -> Path:
    return data_dir() / "eval"


def load_eval_set(folder: Path | None = None, texts: Sequence[EvalText] = ()) -> EvalSet:
    """``texts/*.txt`` (one item each, id ``text-<stem>``) and ``prompts.yaml`` (id ``prompt-<id>``); ``texts`` (the
    user's domain, ``--eval-texts``) replace the folder's texts when given."""
    folder = folder or eval_dir()
    if not texts:
        texts = tuple(EvalText(f"text-{path.stem}", path.read_text(encoding="utf-8"))
                      for path in sorted((folder / "texts").glob("*.txt")))
    path = folder / "prompts.yaml"
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else []
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise ParityError(f"{path} is not valid YAML: {problem}") from None
    if not isinstance(entries or [], list):
        raise ParityError(f"{path} must be a list of prompts, each with 'id' and 'messages' or 'prompt'")
    return EvalSet(tuple(texts), tuple(_eval_prompt(entry, f"{path} entry {index + 1}")
                                for index, entry in enumerate(entries or [])))


def load_eval_texts(paths: Sequence[Path]) -> tuple[EvalText, ...]:
    """The user's domain texts (``--eval-texts``): ``.txt`` files (one text each, id ``text-<stem>``), ``.jsonl``
    files (one ``{"id": ..., "text": ...}`` per line, id ``text-<id>``), or folders of them; one-line ParityError on
    anything else, at start."""
    files: list[Path] = []
    for path in paths:
        found = sorted(p for p in path.iterdir() if p.suffix in EVAL_TEXT_SUFFIXES) if path.is_dir() else [path]
        if not found:
            raise ParityError(f"--eval-texts {path} holds no .txt or .jsonl file")
        files += found
    texts: list[EvalText] = []
    for file in files:
        texts += _texts_of(file)
    twice = sorted(name for name, count in Counter(text.id for text in texts).items() if count > 1)
    if twice:
        raise ParityError(f"--eval-texts: the text ids {', '.join(twice)} appear twice; rename the files or ids")
    return tuple(texts)


def _texts_of(file: Path) -> list[EvalText]:
    if file.suffix not in EVAL_TEXT_SUFFIXES:
        raise ParityError(f"--eval-texts {file} is not a .txt or .jsonl file")
    try:
        content = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParityError(f"--eval-texts {file} cannot be read ({exc}); save it as UTF-8 text") from None
    if file.suffix == ".txt":
        if not content.strip():
            raise ParityError(f"--eval-texts {file} is empty")
        return [EvalText(f"text-{file.stem}", content)]
    texts = []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ParityError(f"--eval-texts {file}:{number}: not valid JSON ({exc.msg})") from None
        if not (isinstance(entry, dict) and isinstance(entry.get("id"), str | int)
                and isinstance(entry.get("text"), str) and entry["text"].strip()):
            raise ParityError(f"--eval-texts {file}:{number}: each line needs an \"id\" and a non-empty \"text\"")
        texts.append(EvalText(f"text-{entry['id']}", entry["text"]))
    if not texts:
        raise ParityError(f"--eval-texts {file} holds no text; write one JSON object per line")
    return texts


def _eval_prompt(entry: object, where: str) -> EvalPrompt:
    if isinstance(entry, dict) and isinstance(entry.get("id"), str | int):
        prompt = entry.get("messages", entry.get("prompt"))
        if isinstance(prompt, str) and prompt:
            return EvalPrompt(f"prompt-{entry['id']}", prompt)
        if isinstance(prompt, list) and prompt and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in prompt):
            return EvalPrompt(f"prompt-{entry['id']}", prompt)
    raise ParityError(f"{where} needs an 'id' and either 'prompt' (a string) or 'messages' "
                      "(a list of {role, content} strings)")


# -- the request: the eval set as the built model's token ids ----------------------------------------
def make_request(runtime: Runtime, eval_set: EvalSet, max_new_tokens: int = MAX_NEW_TOKENS,
                 k: int = TOP_K, precision: str = "fp32") -> dict[str, Any]:
    context = runtime.info.context_length
    items: list[dict[str, Any]] = []
    for entry in eval_set.items:
        if isinstance(entry, EvalPrompt):
            kind, shortest, room = "prompt", 1, context - max_new_tokens
            text = entry.prompt if isinstance(entry.prompt, str) else runtime.chat_prompt(entry.prompt)
        else:
            kind, shortest, room, text = "text", 2, context, entry.text
        ids = runtime.encode(text)
        if not shortest <= len(ids) <= room:
            raise ParityError(f"eval item {entry.id!r} has {len(ids)} tokens; it needs "
                              f"{shortest} to {room} for this model's context of {context}")
        items.append({"id": entry.id, "kind": kind, "text": text, "token_ids": ids})
    request = {"items": items, "max_new_tokens": max_new_tokens, "top_k": k,
               "eos_token_ids": list(runtime.info.eos_token_ids), "vocab_size": runtime.info.vocab_size}
    return request if precision == "fp32" else {**request, "precision": precision}  # fp32 keeps its cache keys


def reference_unavailable() -> str | None:
    """Why no reference can be computed here (a package of the ``convert`` extra is missing: win_arm64 has no torch
    wheel), in one line, or None: the suites that need a reference skip with it."""
    return missing_reason(COMPUTING, REFERENCE_MODULES, REFERENCE_ELSEWHERE)


def require_reference_packages() -> None:
    """Raise MissingPackages (one line) unless the reference's packages are installed."""
    require(COMPUTING, REFERENCE_MODULES, REFERENCE_ELSEWHERE)


def reference_vocab_size(folder: Path) -> int | None:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    size = config.get("vocab_size", config.get("text_config", {}).get("vocab_size"))
    return int(size) if isinstance(size, int) else None


def reference_data(folder: Path, runtime: Runtime, eval_set: EvalSet, cache_dir: Path, logs: Path,
                   progress: Progress, precision: str = "fp32") -> ReferenceData:
    """The reference's answers for ``eval_set`` read as ``runtime``'s token ids (computed once, cached), with its
    weights and compute at ``precision``: fp32 (exact), or bf16 (half the memory)."""
    require_reference_packages()  # before anything is computed or a child started
    ref_vocab, vocab = reference_vocab_size(folder), runtime.info.vocab_size
    if ref_vocab is not None and vocab and ref_vocab != vocab:
        raise ParityError(f"the reference {folder} has a vocabulary of {ref_vocab} tokens (config.json) "
                          f"but the built model has {vocab} (genai_config.json); parity compares next-token "
                          "distributions over one vocabulary: pass --reference the model this one was built from")
    request = make_request(runtime, eval_set, precision=precision)
    encoded = json.dumps(request, sort_keys=True).encode()
    key = combine([("reference", content_hash(folder, HashMemo(cache_dir / "hashes.json"))),
                   ("request", hashlib.sha256(encoded).hexdigest()), ("recipe", RECIPE_VERSION),
                   *versions(REFERENCE_PACKAGES).items()])
    log = logs / f"reference-{key[:12]}.log"

    def compute(out: Path) -> None:
        progress(f"computing the reference's next-token distributions (transformers, {precision}, CPU) from {folder}")
        (out / REQUEST).write_bytes(encoded)
        code = run_logged([sys.executable, "-m", "harness.checks.reference_child", str(folder), str(out)], log, cwd=out,
                          label="reference model", progress=progress)
        if code != 0:
            raise fail("reference model", log, code)

    result = ModelStore(cache_dir).get_or_build("reference", key, compute, {"reference": str(folder),
                                                                           "precision": precision})
    if not result.hit:
        progress(f"reference computed in {result.seconds:.1f} s -> {result.path}")
    return load_reference(result.path)


def load_reference(folder: Path) -> ReferenceData:
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    with np.load(folder / ARRAYS, allow_pickle=False) as arrays:
        items = tuple(
            ReferenceItem(id=entry["id"], text=entry["text"], token_ids=tuple(entry["token_ids"]),
                          prompt_length=entry["prompt_length"], top_ids=arrays[f"{index}.top_ids"],
                          top_log_probs=arrays[f"{index}.top_log_probs"],
                          target_log_probs=arrays[f"{index}.target_log_probs"])
            for index, entry in enumerate(manifest["items"]))
    return ReferenceData(items, int(manifest["vocab_size"]), int(manifest["max_new_tokens"]), manifest["source"],
                         manifest.get("precision", "fp32"))
