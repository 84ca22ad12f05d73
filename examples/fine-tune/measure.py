"""Measure what the fine-tune gained: the base model and the base with the adapter merged, in transformers (fp32).

    python examples/fine-tune/measure.py --adapter=ADAPTER [--base=HF_FOLDER] [--markdown=results.md]

For each model: the greedy answer to every greedy case of the case file, judged by the harness's own assertions
(the case passes when all of its assertions do), and the perplexity of the eval texts (raw text, no chat template:
how the parity suite reads them). This is the fp32 model before any ONNX build; ``pytest --model=ADAPTER`` then
checks the int4 build of the merged model.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Scores:
    label: str
    answers: dict[str, tuple[bool, str]]  # case id -> (passed, answer)
    perplexity: float  # over all eval texts' tokens
    per_text: dict[str, float]
    seconds: float

    @property
    def pass_rate(self) -> float:
        return sum(passed for passed, _ in self.answers.values()) / len(self.answers)


def score(label: str, model: Any, tokenizer: Any, cases: Any, texts: Any) -> Scores:
    import torch

    from harness.checks.assertions import AnswerContext
    from harness.runtime.protocol import Generation

    started = time.perf_counter()
    eos = tokenizer.eos_token_id
    specials = tuple(tokenizer.all_special_tokens)
    context = AnswerContext((eos,), 8192, specials, tuple(tokenizer.convert_tokens_to_ids(list(specials))))
    answers = {}
    for case in cases:
        if not case.greedy:
            continue
        text = case.prompt if isinstance(case.prompt, str) else tokenizer.apply_chat_template(
            [dict(m) for m in case.prompt], add_generation_prompt=True, tokenize=False)
        prompt = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            output = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                    max_new_tokens=case.options.max_new_tokens, eos_token_id=eos, pad_token_id=eos)
        tokens = tuple(int(t) for t in output[0, prompt.shape[1]:])
        answer = Generation(tuple(prompt[0].tolist()), tokens, tokenizer.decode(tokens, skip_special_tokens=True),
                            "eos" if tokens and tokens[-1] == eos else "length", 0.0, (), 0.0)
        passed = case.judge(answer, context)[0] >= case.threshold
        answers[case.id] = (passed, answer.text)
        print(f"{label}: {'PASS' if passed else 'fail'} {case.id}: {answer.text!r}", file=sys.stderr, flush=True)
    total_nll, total_tokens, per_text = 0.0, 0, {}
    for item in texts:
        ids = tokenizer(item.text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            loss = float(model(input_ids=ids, labels=ids).loss)  # mean over the text's tokens but the first
        per_text[item.id] = math.exp(loss)
        total_nll += loss * (ids.shape[1] - 1)
        total_tokens += ids.shape[1] - 1
    return Scores(label, answers, math.exp(total_nll / total_tokens), per_text, time.perf_counter() - started)


def markdown(results: list[Scores]) -> str:
    lines = ["| model | cases passed | pass rate | eval-text perplexity | " + " | ".join(results[0].per_text) + " |",
             "|---|---|---|---|" + "---|" * len(results[0].per_text)]
    for r in results:
        lines.append(f"| {r.label} | {sum(p for p, _ in r.answers.values())}/{len(r.answers)} | {r.pass_rate:.0%} | "
                     f"{r.perplexity:.2f} | " + " | ".join(f"{v:.2f}" for v in r.per_text.values()) + " |")
    lines += ["", "| case | " + " | ".join(r.label for r in results) + " |", "|---|" + "---|" * len(results)]
    for case in results[0].answers:
        cells = []
        for r in results:
            passed, text = r.answers[case]
            shown = " ".join(text.split()).replace("|", "\\|")
            cells.append(f"{'PASS' if passed else 'fail'}: {shown[:110]}{'...' if len(shown) > 110 else ''}")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", type=Path, required=True, help="the peft adapter folder (train.py prints it)")
    parser.add_argument("--base", type=Path, default=None,
                        help="the base Hugging Face folder (default: the one the adapter's config names)")
    parser.add_argument("--cases", type=Path, default=HERE / "cases.yaml")
    parser.add_argument("--eval-texts", type=Path, default=HERE / "eval")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables to this file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the host's cores are shared)")
    args = parser.parse_args(argv)

    import json

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.checks.cases import load_cases
    from harness.checks.reference import load_eval_texts

    torch.set_num_threads(args.threads)
    base = args.base or Path(
        json.loads((args.adapter / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    )
    cases, texts = load_cases([args.cases]), load_eval_texts([args.eval_texts])
    tokenizer = AutoTokenizer.from_pretrained(args.adapter)  # the adapter's copy, chat template included
    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model.eval()
    results = [score("base", model, tokenizer, cases, texts)]
    model = PeftModel.from_pretrained(model, args.adapter).merge_and_unload()
    model.eval()
    results.append(score("base + adapter (merged)", model, tokenizer, cases, texts))
    table = markdown(results)
    print(table)
    if args.markdown is not None:
        args.markdown.write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
