"""The parity math on small hand-computed cases, and the reference side's input checks (no model)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from harness.builtins import builtin_gates
from harness.checks.parity import (
    GATES,
    Figures,
    ParityError,
    ReferenceData,
    ReferenceItem,
    gate_failures,
    kl_divergence,
    log_softmax,
    measure_parity,
    top_k,
    verdict,
)
from harness.checks.reference import EvalPrompt, load_eval_set, load_eval_texts, make_request, reference_data
from harness.config.gates import declare, resolve_gates
from harness.runtime.protocol import Generation, ModelInfo, SearchOptions

DECLARED = declare([builtin_gates()])

DEFAULTS = resolve_gates(DECLARED)


def full_kl(p_logits: Sequence[Sequence[float]], q_logits: Sequence[Sequence[float]]) -> np.ndarray:
    """KL(P || Q) over the whole vocabulary, written out directly."""
    p, q = log_softmax(p_logits), log_softmax(q_logits)
    return np.asarray((np.exp(p) * (p - q)).sum(axis=-1))


def kl_top(p_logits: Sequence[Sequence[float]], q_logits: Sequence[Sequence[float]], k: int) -> np.ndarray:
    ids, log_probs = top_k(log_softmax(p_logits), k)
    return kl_divergence(ids, log_probs, log_softmax(q_logits))


# -- the math --------------------------------------------------------------------------------------
def test_log_softmax_normalizes_and_ignores_a_shift() -> None:
    rows = log_softmax([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]])
    assert np.allclose(np.exp(rows).sum(axis=1), 1.0)
    assert np.allclose(rows[1], math.log(1 / 3))
    assert np.allclose(log_softmax([[11.0, 12.0, 13.0]]), rows[:1])


def test_top_k_orders_most_likely_first_and_caps_k_at_the_vocabulary() -> None:
    ids, log_probs = top_k(np.log([[0.1, 0.6, 0.3]]), 2)
    assert ids.tolist() == [[1, 2]] and np.allclose(np.exp(log_probs), [[0.6, 0.3]])
    assert top_k(np.log([[0.1, 0.6, 0.3]]), 10)[0].tolist() == [[1, 2, 0]]


def test_identical_distributions_have_zero_kl_ratio_one_full_agreement() -> None:
    logits = np.random.default_rng(0).normal(size=(6, 50))
    kl = kl_top(logits, logits, 8)
    assert np.allclose(kl, 0.0, atol=1e-12)
    nll = -log_softmax(logits)[np.arange(5), [3, 1, 4, 1, 5]]
    figures = Figures.of(kl[:5], nll, nll, log_softmax(logits).argmax(axis=1)[:5] == top_k(logits, 1)[0][:5, 0])
    assert (figures.ppl_ratio, figures.kl_mean, figures.kl_max, figures.top1_agreement) == (1.0, 0.0, 0.0, 1.0)


def test_kl_of_two_coins() -> None:
    # KL((0.75, 0.25) || (0.5, 0.5)) = 0.75 ln 1.5 + 0.25 ln 0.5
    assert kl_top(np.log([[0.75, 0.25]]), np.log([[0.5, 0.5]]), 2)[0] == pytest.approx(0.1308120, abs=1e-6)


def test_kl_with_a_bucket_for_the_rest_is_exact_once_k_covers_all_but_one_token() -> None:
    p, q = np.log([[0.6, 0.3, 0.1]]), np.log([[0.2, 0.5, 0.3]])
    exact = 0.6 * math.log(3) + 0.3 * math.log(0.6) + 0.1 * math.log(1 / 3)  # 0.396058
    assert full_kl(p, q)[0] == pytest.approx(exact)
    assert kl_top(p, q, 3)[0] == pytest.approx(exact)
    assert kl_top(p, q, 2)[0] == pytest.approx(exact)  # the bucket holds one token: no information lost
    # K = 1: tokens 2 and 3 merge into one bucket (0.4 vs 0.8), which can only lower the KL.
    assert kl_top(p, q, 1)[0] == pytest.approx(0.6 * math.log(3) + 0.4 * math.log(0.5))


def test_kl_with_a_bucket_is_a_lower_bound_that_tightens_with_k() -> None:
    rng = np.random.default_rng(1)
    p, q = rng.normal(scale=3, size=(40, 200)), rng.normal(scale=3, size=(40, 200))
    exact = full_kl(p, q)
    bounds = [kl_top(p, q, k) for k in (1, 10, 50, 199, 200)]
    assert all((bound <= exact + 1e-12).all() for bound in bounds)
    assert [float(b.sum()) for b in bounds] == sorted(float(b.sum()) for b in bounds)
    assert np.allclose(bounds[-1], exact) and np.allclose(bounds[-2], exact)


def test_figures_from_hand_computed_positions() -> None:
    figures = Figures.of(kl=np.array([0.0, 1.0]), nll_reference=np.log([2.0, 2.0]),
                         nll_candidate=np.log([2.0, 8.0]), agree=np.array([True, False]))
    assert figures.positions == 2
    assert figures.ppl_reference == pytest.approx(2.0) and figures.ppl_candidate == pytest.approx(4.0)
    assert figures.ppl_ratio == pytest.approx(2.0)
    assert (figures.kl_mean, figures.kl_p95, figures.kl_max, figures.top1_agreement) == (0.5, 0.95, 1.0, 0.5)


def test_no_scored_position_is_a_clear_error() -> None:
    empty = np.array([])
    with pytest.raises(ParityError, match="no scored position"):
        Figures.of(empty, empty, empty, empty.astype(bool))


# -- gates and verdicts ----------------------------------------------------------------------------
def figures(ppl_ratio: float = 1.1, kl_mean: float = 0.1, kl_p95: float = 0.5, top1: float = 0.9) -> Figures:
    return Figures(100, 10.0, 10.0 * ppl_ratio, ppl_ratio, kl_mean, kl_p95, kl_p95, kl_p95, top1)


def test_parity_gates_are_declared() -> None:
    assert {gate.name for gate in GATES} <= set(DECLARED)
    assert {gate.name: gate.bound for gate in GATES} == {
        "parity_ppl_ratio_max": "max", "parity_kl_mean_max": "max", "parity_kl_p95_max": "max",
        "parity_top1_agreement_min": "min"}


def test_within_the_gates() -> None:
    assert gate_failures(figures(), DEFAULTS) == []
    assert verdict("text-prose", figures(), DEFAULTS) == "text-prose: within the parity gates"


@pytest.mark.parametrize(("broken", "phrase"), [
    (figures(ppl_ratio=1.6), "perplexity ratio 1.6 is above parity_ppl_ratio_max 1.45 (default)"),
    (figures(kl_mean=0.7), "mean KL 0.7 is above parity_kl_mean_max 0.55 (default)"),
    (figures(kl_p95=1.5), "p95 KL 1.5 is above parity_kl_p95_max 1.3 (default)"),
    (figures(top1=0.4), "top-1 agreement 0.4 is below parity_top1_agreement_min 0.45 (default)"),
])
def test_each_gate_trips_with_a_readable_verdict(broken: Figures, phrase: str) -> None:
    assert gate_failures(broken, DEFAULTS) == [phrase]
    assert verdict("text-list", broken, DEFAULTS) == f"text-list: the built model departs from the reference: {phrase}"


def test_limits_at_the_gate_pass_and_an_override_moves_them() -> None:
    assert gate_failures(figures(ppl_ratio=1.45, top1=0.45), DEFAULTS) == []
    loose = resolve_gates(DECLARED, ["parity_ppl_ratio_max=2"])
    assert gate_failures(figures(ppl_ratio=1.6), loose) == []
    assert gate_failures(figures(ppl_ratio=2.5), loose) == [
        "perplexity ratio 2.5 is above parity_ppl_ratio_max 2 (the command line)"]


# -- measuring a (stub) runtime against reference data ---------------------------------------------
@dataclass
class StubRuntime:
    """Just what parity uses: a fixed tokenizer and fixed logits per prefix (a greedy answer is never generated)."""

    table: dict[tuple[int, ...], list[float]]  # logits after each prefix
    vocab: int = 4

    def __post_init__(self) -> None:
        self.info = ModelInfo(Path("."), "stub", 64, (3,), None, self.vocab)

    def encode(self, text: str) -> list[int]:
        return [int(c) for c in text]

    def chat_prompt(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return "".join(m["content"] for m in messages)

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        return np.array([self.table[tuple(token_ids[:i + 1])] for i in range(len(token_ids))], dtype=np.float32)

    def generate(self, prompt: str, options: SearchOptions) -> Generation:
        raise AssertionError("parity reads greedy divergence from the logits; it generates nothing")


def reference_item(item_id: str, text: str, ids: tuple[int, ...], prompt_length: int | None,
                   table: dict[tuple[int, ...], list[float]]) -> ReferenceItem:
    first = 0 if prompt_length is None else prompt_length - 1
    log_probs = log_softmax([table[ids[:i + 1]] for i in range(first, len(ids) - 1)])
    top_ids, top_log_probs = top_k(log_probs, 2)
    targets = np.array(ids[first + 1:])
    return ReferenceItem(item_id, text, ids, prompt_length, top_ids, top_log_probs.astype(np.float32),
                         log_probs[np.arange(len(targets)), targets].astype(np.float32))


TABLE = {(0,): [0.0, 3.0, 0.0, 0.0], (0, 1): [0.0, 0.0, 3.0, 0.0], (0, 1, 2): [0.0, 0.0, 0.0, 3.0]}


def test_measure_a_runtime_identical_to_the_reference() -> None:
    data = ReferenceData((reference_item("text-a", "0123", (0, 1, 2, 3), None, TABLE),
                          reference_item("prompt-b", "01", (0, 1, 2, 3), 2, TABLE)), 4, 8, "ref")
    report = measure_parity(StubRuntime(TABLE), data)
    assert report.item("text-a").figures.positions == 3 and report.item("prompt-b").figures.positions == 2
    assert report.overall.ppl_ratio == pytest.approx(1.0) and report.overall.kl_max == pytest.approx(0.0, abs=1e-6)
    assert report.overall.top1_agreement == 1.0
    assert report.greedy_divergences == {"prompt-b": None}
    assert report.greedy_summary() == {"greedy_parted_at_first_token": 0.0, "greedy_median_divergence": 2.0}
    assert report.verdict(DEFAULTS) == "whole eval set: within the parity gates"
    assert report.failures(DEFAULTS) == []


def test_measure_a_runtime_that_ranks_another_token_first() -> None:
    data = ReferenceData((reference_item("text-a", "0123", (0, 1, 2, 3), None, TABLE),
                          reference_item("prompt-b", "01", (0, 1, 2, 3), 2, TABLE)), 4, 8, "ref")
    other = {**TABLE, (0, 1): [0.0, 3.0, 0.0, 0.0]}  # after "01" it prefers 1 over 2
    report = measure_parity(StubRuntime(other), data)
    answer = report.item("prompt-b").figures
    assert answer.top1_agreement == 0.5 and answer.ppl_ratio > 1.0 and answer.kl_max > 2.0
    assert report.item("text-a").figures.top1_agreement == pytest.approx(2 / 3)
    assert report.greedy_divergences == {"prompt-b": 0}
    assert report.greedy_summary() == {"greedy_parted_at_first_token": 1.0, "greedy_median_divergence": 0.0}
    assert "parity_kl_p95_max" in report.verdict(DEFAULTS)
    assert [line.split(":")[0] for line in report.failures(DEFAULTS)] == ["text-a", "whole eval set"]


def test_a_different_vocabulary_or_tokenizer_is_a_clear_error() -> None:
    item = reference_item("text-a", "0123", (0, 1, 2, 3), None, TABLE)
    with pytest.raises(ParityError, match=r"vocabulary has 4 tokens .* the reference ref has 5"):
        measure_parity(StubRuntime(TABLE), ReferenceData((item,), 5, 8, "ref"))
    renamed = ReferenceItem(item.id, "0120", *[getattr(item, f) for f in (
        "token_ids", "prompt_length", "top_ids", "top_log_probs", "target_log_probs")])
    with pytest.raises(ParityError, match="'text-a' encodes differently"):
        measure_parity(StubRuntime(TABLE), ReferenceData((renamed,), 4, 8, "ref"))


# -- the eval set and the request ------------------------------------------------------------------
def test_the_shipped_eval_set() -> None:
    shipped = load_eval_set()
    assert [t.id for t in shipped.texts] == ["text-code", "text-facts", "text-instructions", "text-list", "text-prose"]
    assert len(shipped.prompts) == 5 and len(set(shipped.ids)) == len(shipped.ids)
    assert all(p.id.startswith("prompt-") for p in shipped.prompts)


def test_extra_prompts_join_the_set_with_unique_ids() -> None:
    shipped = load_eval_set()
    merged = shipped.with_prompts([EvalPrompt("domain-refund", [{"role": "user", "content": "Refund?"}])])
    assert merged.ids[-1] == "domain-refund" and len(merged.prompts) == len(shipped.prompts) + 1
    with pytest.raises(ParityError, match=r"eval item ids \['prompt-capital'\] appear twice"):
        shipped.with_prompts([EvalPrompt("prompt-capital", "again")])


@pytest.mark.parametrize(("content", "message"), [
    ("- id: a\n  messages: [{role: user, content: What? }", "is not valid YAML"),
    ("id: a\n", "must be a list of prompts"),
    ("- id: a\n", "entry 1 needs an 'id' and either 'prompt'"),
    ("- id: a\n  messages:\n    - role: user\n", "entry 1 needs an 'id'"),
])
def test_bad_prompt_file_is_one_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "prompts.yaml").write_text(content, encoding="utf-8")
    with pytest.raises(ParityError, match=message) as caught:
        load_eval_set(tmp_path)
    assert "\n" not in str(caught.value)


def test_request_holds_the_built_models_token_ids() -> None:
    eval_set = load_eval_set(Path("/nonexistent")).with_prompts([EvalPrompt("p", [{"role": "user", "content": "01"}])])
    request = make_request(StubRuntime(TABLE), eval_set, max_new_tokens=8, k=2)
    assert request["items"] == [{"id": "p", "kind": "prompt", "text": "01", "token_ids": [0, 1]}]
    assert (request["eos_token_ids"], request["vocab_size"], request["top_k"]) == ([3], 4, 2)


def test_an_item_longer_than_the_context_is_a_clear_error() -> None:
    eval_set = load_eval_set(Path("/nonexistent")).with_prompts([EvalPrompt("p", "0" * 60)])
    with pytest.raises(ParityError, match="'p' has 60 tokens; it needs 1 to 56 for this model's context of 64"):
        make_request(StubRuntime(TABLE), eval_set, max_new_tokens=8)


def test_reference_with_another_vocabulary_fails_before_computing(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 32000}), encoding="utf-8")
    with pytest.raises(ParityError, match=r"vocabulary of 32000 tokens .* the built model has 4"):
        reference_data(tmp_path, StubRuntime(TABLE), load_eval_set(), tmp_path / "cache", tmp_path, print)
    assert not (tmp_path / "cache").exists()


def test_domain_texts_replace_the_shipped_ones(tmp_path: Path) -> None:
    (tmp_path / "refunds.txt").write_text("Refunds are paid within five days.", encoding="utf-8")
    (tmp_path / "more.jsonl").write_text('{"id": "shipping", "text": "We ship on Mondays."}\n\n'
                                         '{"id": 7, "text": "Returns are free."}\n', encoding="utf-8")
    texts = load_eval_texts([tmp_path])
    assert [text.id for text in texts] == ["text-shipping", "text-7", "text-refunds"]
    eval_set = load_eval_set(texts=texts)
    assert eval_set.texts == texts and eval_set.prompts == load_eval_set().prompts  # the prompts stay


@pytest.mark.parametrize(("files", "message"), [
    ({"a.jsonl": "{nope\n"}, r"a\.jsonl:1: not valid JSON"),
    ({"a.jsonl": '{"id": "x"}\n'}, r'a\.jsonl:1: each line needs an "id" and a non-empty "text"'),
    ({"a.jsonl": "\n"}, r"a\.jsonl holds no text"),
    ({"a.txt": "  \n"}, r"a\.txt is empty"),
    ({"a.txt": "one", "b.jsonl": '{"id": "a", "text": "two"}\n'}, "the text ids text-a appear twice"),
    ({"notes.md": "text"}, "holds no .txt or .jsonl file"),
])
def test_bad_domain_texts_are_one_line(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(ParityError, match=message) as info:
        load_eval_texts([tmp_path])
    assert "\n" not in str(info.value)
