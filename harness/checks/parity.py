"""Parity of a built model with its fp32 reference: perplexity ratio, KL divergence, top-1 agreement
and the first token where the two greedy answers part.

The reference side (``harness.checks.reference``) is computed once and kept, per scored position, as the
reference's top-K next-token log-probabilities; the KL divergence is taken over those K tokens plus
one bucket for the rest of the vocabulary. By the log-sum inequality that is a lower bound of the
full KL, exact when K covers the vocabulary. On the default model at int4, K = 2048 gives 99.1 % of
the full mean KL over the eval texts (98.2 % on the prose text, the worst), so the KL gates read a
hair low, never high.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from harness.config.gates import Gate
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.config.gates import Gates
    from harness.runtime.protocol import LogitsRuntime, Runtime

Floats = npt.NDArray[np.float64]

# Measured on the default model (SmolLM2-135M-Instruct, GGUF Q4_1 source) over fixtures/eval and the
# shipped cases: the eval text closest to the limit, then the whole set (1292 positions) in brackets.
# "int4" is the default Olive build (its worst text), "degraded" the model builder's int4 with block
# size 256 (its best text; tests/e2e/test_parity.py builds it). No timing is involved and an int4
# build is bit-identical from run to run, so the figures repeat exactly on this machine:
#   HARNESS_CACHE_DIR=/tmp/hcache pytest suites/test_parity.py [--precision=fp32]
#   ... pytest suites/test_parity.py --model=DEGRADED_FOLDER --reference=HF_FOLDER
# (figures in reports/<run>/results.json; int4 = the model builder 0.18's, worst text (whole set)).
# Each limit leaves int4 6 to 13 % of headroom, several times what the compute path moves it (the
# fp32-compute twin, --accuracy-level=1: ppl ratio +-0.02, KL mean +-0.01, KL p95 +-0.08, top-1
# +-0.013), and the degraded build crosses it on every eval text (top-1 agreement: on the list text only).
GATES: tuple[Gate, ...] = (
    Gate("parity_ppl_ratio_max", 1.45, "max", "",
         "perplexity of the built model / perplexity of the reference, on each eval text and on the whole "
         "set; measured int4 1.35 (1.31), fp32 1.000 (1.000), degraded 1.55 (1.88)", "(0, inf)"),
    Gate("parity_kl_mean_max", 0.55, "max", " nats",
         "mean KL(reference || built) of the next-token distributions; "
         "measured int4 0.50 (0.36), fp32 0.000 (0.000), degraded 0.62 (0.69)"),
    Gate("parity_kl_p95_max", 1.30, "max", " nats",
         "95th percentile of the per-position KL(reference || built); "
         "measured int4 1.15 (1.01), fp32 0.000 (0.000), degraded 1.64 (1.86)"),
    Gate("parity_top1_agreement_min", 0.45, "min", "",
         "share of positions where both models rank the same next token first; "
         "measured int4 0.49 (0.68), fp32 1.000 (1.000), degraded 0.36 on the list text (0.59)", "[0, 1]"),
)


class ParityError(HarnessError):
    """The reference and the built model cannot be compared (vocabulary or tokenizer differ)."""


# -- the math --------------------------------------------------------------------------------------
def log_softmax(logits: npt.ArrayLike) -> Floats:
    """Row-wise log-softmax in float64."""
    values = np.asarray(logits, dtype=np.float64)
    shifted = values - values.max(axis=-1, keepdims=True)
    result: Floats = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return result


def top_k(log_probs: npt.ArrayLike, k: int) -> tuple[npt.NDArray[np.int32], Floats]:
    """The ``k`` most likely tokens of each row, most likely first, and their log-probabilities."""
    values = np.asarray(log_probs, dtype=np.float64)
    k = min(k, values.shape[-1])
    part = np.argpartition(-values, k - 1, axis=-1)[:, :k]
    order = np.argsort(-np.take_along_axis(values, part, axis=-1), axis=-1, kind="stable")
    ids = np.take_along_axis(part, order, axis=-1).astype(np.int32)
    return ids, np.take_along_axis(values, ids, axis=-1)


def kl_divergence(ref_ids: npt.ArrayLike, ref_log_probs: npt.ArrayLike, candidate: npt.ArrayLike) -> Floats:
    """KL(reference || candidate) per row, over the reference's listed tokens plus one bucket for the rest.

    ``ref_ids`` / ``ref_log_probs`` are [rows, K]; ``candidate`` is the full log-softmax [rows, vocab].
    Tiny negative values (float rounding between two equal distributions) are clipped to 0.
    """
    ids = np.asarray(ref_ids, dtype=np.int64)
    p_log = np.asarray(ref_log_probs, dtype=np.float64)
    q_log = np.take_along_axis(np.asarray(candidate, dtype=np.float64), ids, axis=-1)
    p = np.exp(p_log)
    listed = (p * (p_log - q_log)).sum(axis=-1)
    p_rest = np.clip(1.0 - p.sum(axis=-1), 0.0, 1.0)
    q_rest = np.clip(1.0 - np.exp(q_log).sum(axis=-1), 1e-300, 1.0)
    rest = np.where(p_rest > 0, p_rest * np.log(np.where(p_rest > 0, p_rest, 1.0) / q_rest), 0.0)
    result: Floats = np.maximum(listed + rest, 0.0)
    return result


@dataclass(frozen=True)
class Figures:
    """The gated numbers over a set of scored positions."""

    positions: int
    ppl_reference: float
    ppl_candidate: float
    ppl_ratio: float
    kl_mean: float
    kl_p95: float
    kl_p99: float
    kl_max: float
    top1_agreement: float

    @classmethod
    def of(cls, kl: Floats, nll_reference: Floats, nll_candidate: Floats, agree: npt.NDArray[np.bool_]) -> Figures:
        if kl.size == 0:
            raise ParityError("parity has no scored position (every eval item is shorter than 2 tokens)")
        mean_ref, mean_cand = float(nll_reference.mean()), float(nll_candidate.mean())
        return cls(
            positions=int(kl.size),
            ppl_reference=float(np.exp(mean_ref)),
            ppl_candidate=float(np.exp(mean_cand)),
            ppl_ratio=float(np.exp(mean_cand - mean_ref)),
            kl_mean=float(kl.mean()),
            kl_p95=float(np.percentile(kl, 95)),
            kl_p99=float(np.percentile(kl, 99)),
            kl_max=float(kl.max()),
            top1_agreement=float(agree.mean()),
        )

    def summary(self) -> str:
        return (f"{self.positions} positions, perplexity {self.ppl_reference:.3f} (reference) -> "
                f"{self.ppl_candidate:.3f} (built), ratio {self.ppl_ratio:.3f}; KL mean {self.kl_mean:.4f}, "
                f"p95 {self.kl_p95:.4f}, p99 {self.kl_p99:.4f}, max {self.kl_max:.4f}; "
                f"top-1 agreement {self.top1_agreement:.1%}")


# What each gate limits: the figure's name in messages, and how to read it from Figures.
GATED: Mapping[str, tuple[str, Callable[[Figures], float]]] = {
    "parity_ppl_ratio_max": ("perplexity ratio", lambda f: f.ppl_ratio),
    "parity_kl_mean_max": ("mean KL", lambda f: f.kl_mean),
    "parity_kl_p95_max": ("p95 KL", lambda f: f.kl_p95),
    "parity_top1_agreement_min": ("top-1 agreement", lambda f: f.top1_agreement),
}


def gate_failures(figures: Figures, gates: Gates) -> list[str]:
    """One phrase per broken gate, e.g. 'perplexity ratio 1.6 is above parity_ppl_ratio_max 1.45 (default)'."""
    failures = []
    for name, (label, figure) in GATED.items():
        value = figure(figures)
        if not gates.check(name, value):
            side = "above" if gates.declared[name].bound == "max" else "below"
            failures.append(f"{label} {value:.4g} is {side} {name} {gates[name]:g} ({gates.origins[name]})")
    return failures


def verdict(label: str, figures: Figures, gates: Gates) -> str:
    """One line: within the gates, or which gates are broken and by how much."""
    failures = gate_failures(figures, gates)
    if not failures:
        return f"{label}: within the parity gates"
    return f"{label}: the built model departs from the reference: " + "; ".join(failures)


def parity_failure(label: str, figures: Figures, gates: Gates, *details: str) -> str | None:
    """None when ``figures`` are within every parity gate, else the failure: the verdict line, the figures, and
    ``details``, one per line."""
    if gate_failures(figures, gates):
        return "\n".join((verdict(label, figures, gates), figures.summary(), *details))
    return None


# -- the reference side, as computed by harness.checks.reference ------------------------------------------
@dataclass(frozen=True)
class ReferenceItem:
    """What the reference model said about one eval item (token ids from the built model's tokenizer).

    A text item scores every position of the text. A prompt item is the prompt followed by the
    reference's greedy answer; only the answer's tokens are scored.
    """

    id: str
    text: str  # the text, or the prompt as rendered for the model
    token_ids: tuple[int, ...]  # what both models read
    prompt_length: int | None  # prompt items: tokens of the prompt; the rest is the reference's answer
    top_ids: npt.NDArray[np.int32]  # [scored, K] the reference's most likely next tokens
    top_log_probs: npt.NDArray[np.float32]  # [scored, K]
    target_log_probs: npt.NDArray[np.float32]  # [scored] the reference's log-probability of the actual next token

    @property
    def first_scored(self) -> int:
        """Position whose prediction is scored first (row i of the logits predicts token i + 1)."""
        return 0 if self.prompt_length is None else self.prompt_length - 1

    @property
    def answer(self) -> tuple[int, ...]:
        return () if self.prompt_length is None else self.token_ids[self.prompt_length:]


@dataclass(frozen=True)
class ReferenceData:
    """The reference's view of the whole eval set; computed once, reused for every built model."""

    items: tuple[ReferenceItem, ...]
    vocab_size: int
    max_new_tokens: int  # the token limit of the reference's greedy answers
    source: str  # the reference folder, for messages
    precision: str = "fp32"  # the reference's weights and compute: fp32, or bf16 where the memory plan chose it


# -- measuring a built model -----------------------------------------------------------------------
@dataclass(frozen=True)
class ItemParity:
    id: str
    kl: Floats
    nll_reference: Floats
    nll_candidate: Floats
    agree: npt.NDArray[np.bool_]
    greedy_divergence: int | None  # prompt items: first answer token the built model ranks another first (None: none)
    answer_tokens: int  # prompt items: tokens in the reference's greedy answer (0 for texts)

    @property
    def figures(self) -> Figures:
        return Figures.of(self.kl, self.nll_reference, self.nll_candidate, self.agree)

    @property
    def is_prompt(self) -> bool:
        return self.answer_tokens > 0


@dataclass(frozen=True)
class ParityReport:
    items: tuple[ItemParity, ...]

    def item(self, item_id: str) -> ItemParity:
        return next(item for item in self.items if item.id == item_id)

    @property
    def overall(self) -> Figures:
        """All scored positions of the eval set pooled."""
        return Figures.of(*(np.concatenate([getattr(i, name) for i in self.items])
                            for name in ("kl", "nll_reference", "nll_candidate", "agree")))

    @property
    def greedy_divergences(self) -> dict[str, int | None]:
        return {item.id: item.greedy_divergence for item in self.items if item.is_prompt}

    def greedy_summary(self) -> dict[str, float]:
        """Share of prompts whose greedy answers differ from the first token, and the median token where
        answers part (an identical answer counts as parting after its last token)."""
        prompts = [item for item in self.items if item.is_prompt]
        if not prompts:
            return {}
        parted = [item.answer_tokens if item.greedy_divergence is None else item.greedy_divergence
                  for item in prompts]
        return {"greedy_parted_at_first_token": sum(index == 0 for index in parted) / len(parted),
                "greedy_median_divergence": float(np.median(parted))}

    def verdict(self, gates: Gates) -> str:
        return verdict("whole eval set", self.overall, gates)

    def failures(self, gates: Gates) -> list[str]:
        """The verdict of every eval text and of the whole set that breaks a gate (the suite's pass rule)."""
        judged = [(item.id, item.figures) for item in self.items if not item.is_prompt]
        return [verdict(label, figures, gates) for label, figures in (*judged, ("whole eval set", self.overall))
                if gate_failures(figures, gates)]

    def to_json(self) -> dict[str, Any]:
        return {"overall": vars(self.overall),
                "items": {item.id: vars(item.figures) for item in self.items},
                "greedy_divergence": self.greedy_divergences}


def _check_encoding(runtime: Runtime, item: ReferenceItem) -> None:
    expected = item.token_ids if item.prompt_length is None else item.token_ids[:item.prompt_length]
    if tuple(runtime.encode(item.text)) != expected:
        raise ParityError(f"eval item {item.id!r} encodes differently with this model's tokenizer than "
                          "with the one the reference data was made for; compute the reference data for this model")


def measure_item(runtime: LogitsRuntime, item: ReferenceItem, vocab_size: int) -> ItemParity:
    """One item's figures from one prefill of its tokens. For a prompt, where the built model's greedy answer parts
    from the reference's is the first answer token it ranks another token first, fed the reference's answer: up to
    there the two answers are the same tokens, so its own greedy answer parts there too (but for a decode step's
    rounding against the prefill's), and no answer needs generating (960 decode steps on a random-init model)."""
    _check_encoding(runtime, item)
    logits = runtime.logits(item.token_ids[:-1])
    if logits.shape[-1] != vocab_size:
        raise ParityError(f"the built model has {logits.shape[-1]} logits per position but the "
                          f"reference has {vocab_size}; parity needs the same vocabulary: pass --reference "
                          "the model this one was built from")
    candidate = log_softmax(logits[item.first_scored:])
    targets = np.asarray(item.token_ids[item.first_scored + 1:], dtype=np.int64)
    nll_candidate = -np.take_along_axis(candidate, targets[:, None], axis=-1)[:, 0]
    divergence = None
    if item.prompt_length is not None:  # the scored positions are the answer's
        parted = np.flatnonzero(candidate.argmax(axis=-1) != targets)
        divergence = int(parted[0]) if parted.size else None
    return ItemParity(
        id=item.id,
        kl=kl_divergence(item.top_ids, item.top_log_probs, candidate),
        nll_reference=-item.target_log_probs.astype(np.float64),
        nll_candidate=nll_candidate,
        agree=candidate.argmax(axis=-1) == item.top_ids[:, 0],
        greedy_divergence=divergence,
        answer_tokens=len(item.answer),
    )


def measure_parity(runtime: LogitsRuntime, reference: ReferenceData) -> ParityReport:
    """Compare a loaded built model with reference data (from ``harness.checks.reference.reference_data``)."""
    if runtime.info.vocab_size and runtime.info.vocab_size != reference.vocab_size:
        raise ParityError(f"the built model's vocabulary has {runtime.info.vocab_size} tokens "
                          f"(genai_config.json) but the reference {reference.source} has {reference.vocab_size}; "
                          "parity needs the same vocabulary: pass --reference the model this one was built from")
    return ParityReport(tuple(measure_item(runtime, item, reference.vocab_size) for item in reference.items))
