"""``python -m harness.checks.reference_child FOLDER OUT``: the fp32 reference's child process (transformers,
CPU), apart from the library that starts it and reads its result (``harness.checks.reference``), so torch and the
reference's weights stay out of the pytest process."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from harness.checks.parity import log_softmax, top_k
from harness.checks.reference import ARRAYS, MANIFEST, REQUEST, require_reference_packages
from harness.preparation.optional import child_main
from harness.system import usable_cores

PRECISIONS = {"fp32": "float32", "bf16": "bfloat16"}  # the reference's precision -> torch's dtype


class ReferenceModel:
    """The reference loaded once with transformers (fp32 or bf16, CPU, no gradients). Weights stored at that dtype
    are mapped from the safetensors files, not copied."""

    def __init__(self, folder: Path, precision: str = "fp32") -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self._torch = torch
        # Half the cores: with every core, torch's threads spin against the pytest process and other jobs;
        # on a busy 2-core machine a 152-token forward pass took 2 to 8 s on 2 threads, 0.6 to 0.8 s on 1.
        torch.set_num_threads(max(1, usable_cores() // 2))
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, PRECISIONS[precision]))
        self._model: Any = cast(Any, model).eval()  # inference mode (no dropout)

    def logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """Next-token logits at every position, [len(token_ids), vocab] (row i predicts token i + 1)."""
        with self._torch.no_grad():
            output = self._model(input_ids=self._torch.tensor([list(token_ids)]))
        return np.asarray(output.logits[0].float().numpy(), dtype=np.float32)

    def greedy(self, token_ids: Sequence[int], max_new_tokens: int, eos_token_ids: Sequence[int]) -> list[int]:
        """The greedy continuation (argmax each step, KV cache), ending with an eos token if one comes."""
        torch = self._torch
        answer: list[int] = []
        with torch.no_grad():
            output = self._model(input_ids=torch.tensor([list(token_ids)]), use_cache=True)
            while len(answer) < max_new_tokens:
                token = int(output.logits[0, -1].argmax())
                answer.append(token)
                if token in eos_token_ids:
                    break
                output = self._model(input_ids=torch.tensor([[token]]), cache=output.cache,
                                     use_cache=True)
        return answer


def compute_reference(folder: Path, out: Path) -> None:
    require_reference_packages()
    request = json.loads((out / REQUEST).read_text(encoding="utf-8"))
    precision = request.get("precision", "fp32")
    model = ReferenceModel(folder, precision)
    arrays: dict[str, Any] = {}
    items: list[dict[str, Any]] = []
    vocab = 0
    for index, entry in enumerate(request["items"]):
        ids, prompt_length = list(entry["token_ids"]), None
        if entry["kind"] == "prompt":
            prompt_length = len(ids)
            ids += model.greedy(ids, request["max_new_tokens"], request["eos_token_ids"])
        first = 0 if prompt_length is None else prompt_length - 1
        log_probs = log_softmax(model.logits(ids[:-1])[first:])
        vocab = log_probs.shape[-1]
        if request["vocab_size"] and vocab != request["vocab_size"]:
            raise SystemExit(f"the reference has {vocab} logits per position, the built model "
                             f"{request['vocab_size']}: not the same vocabulary")
        targets = np.asarray(ids[first + 1:], dtype=np.int64)
        top_ids, top_log_probs = top_k(log_probs, request["top_k"])
        arrays[f"{index}.top_ids"] = top_ids
        arrays[f"{index}.top_log_probs"] = top_log_probs.astype(np.float32)
        arrays[f"{index}.target_log_probs"] = np.take_along_axis(log_probs, targets[:, None], -1)[:, 0].astype(
            np.float32)
        items.append({"id": entry["id"], "text": entry["text"], "token_ids": ids, "prompt_length": prompt_length})
        print(f"{entry['id']}: {len(ids)} tokens, {len(targets)} scored", flush=True)
    np.savez(out / ARRAYS, **arrays)
    manifest = {"vocab_size": vocab, "max_new_tokens": request["max_new_tokens"], "source": str(folder),
                "precision": precision, "items": items}
    (out / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def main(argv: list[str]) -> int:
    return child_main(argv, "python -m harness.checks.reference_child REFERENCE_FOLDER OUT_FOLDER "
                            "(OUT_FOLDER holds request.json)", compute_reference, paths=2)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
