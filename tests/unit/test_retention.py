"""Fine-tune retention: (built - base) / (reference - base), per metric, gated; answers judged by the cases' checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from harness.checks.assertions import AnswerContext
from harness.checks.cases import load_cases
from harness.checks.parity import ReferenceData, ReferenceItem
from harness.checks.reference import CASE_PREFIX
from harness.checks.retention import (
    GATES,
    Retention,
    case_retentions,
    failures,
    log_likelihood,
    reference_answer,
)
from harness.config.gates import declare, resolve_gates
from harness.runtime.protocol import Generation
from harness.testing.fakes import FakeRuntime, write_genai_folder

DEFAULTS = resolve_gates(declare([GATES]))
CASES = """\
cases:
  - id: colour
    messages: [{role: user, content: "What colour is the Tideline T4?"}]
    assert: [{type: contains, value: slate grey}]
  - id: weight
    messages: [{role: user, content: "How heavy is the Tideline T4?"}]
    assert: [{type: contains, value: 212 grams}, {type: contains, value: Tideline}]
"""


def test_retention_is_the_share_of_the_gain_kept() -> None:
    assert Retention("case_pass_share", 0.0, 0.8, 0.6).share == pytest.approx(0.75)
    assert Retention("log_likelihood", -3.7, -1.9, -2.1).share == pytest.approx(1.6 / 1.8)
    assert Retention("case_score", 0.5, 0.9, 0.95).share > 1  # the build may beat its reference
    assert math.isnan(Retention("case_score", 0.5, 0.5, 0.5).share)


def test_a_build_that_erases_the_fine_tune_fails_the_gate_and_one_that_keeps_it_passes() -> None:
    kept, erased = Retention("case_pass_share", 0.0, 0.8, 0.76), Retention("case_pass_share", 0.0, 0.8, 0.1)
    assert failures([kept], DEFAULTS) == []
    (problem,) = failures([kept, erased], DEFAULTS)
    assert problem.startswith("case_pass_share: base 0.000, fine-tuned reference 0.800, built 0.100: retention 0.12")
    assert "finetune_retention_min" in problem


def test_a_metric_the_fine_tune_did_not_move_is_not_gated() -> None:
    unmoved = Retention("log_likelihood", -2.0, -1.99, -3.0)  # gained 0.01 nats: below MIN_GAIN
    assert not unmoved.measurable and failures([unmoved], DEFAULTS) == []
    assert "no gain to retain" in unmoved.line()


def test_log_likelihood_pools_the_texts_tokens() -> None:
    def data(*values: list[float]) -> ReferenceData:
        items = tuple(ReferenceItem(f"t{i}", "", (), None, np.zeros((len(v), 1), np.int32),
                                    np.zeros((len(v), 1), np.float32), np.asarray(v, np.float32))
                      for i, v in enumerate(values))
        return ReferenceData(items, 10, 8, "ref")

    retention = log_likelihood(data([-4.0, -4.0], [-2.0]), data([-1.0, -1.0], [-1.0]),
                               [np.asarray([2.0, 2.0]), np.asarray([1.0])])
    assert (retention.base, retention.reference, retention.built) == pytest.approx((-10 / 3, -1.0, -5 / 3))


def test_answers_are_judged_by_the_cases_own_checks(tmp_path: Path) -> None:
    (tmp_path / "cases.yaml").write_text(CASES, encoding="utf-8")
    cases = list(load_cases([tmp_path / "cases.yaml"]))
    runtime = FakeRuntime(write_genai_folder(tmp_path / "model"))

    def said(text: str) -> Generation:
        return Generation((), tuple(runtime.encode(text)), text, "eos", 0.0, (), 0.0)

    context = AnswerContext(runtime.info.eos_token_ids, runtime.info.context_length, (), ())
    base = [said("It is red."), said("It is heavy.")]
    reference = [said("It is slate grey."), said("The Tideline T4 weighs 212 grams.")]
    built = [said("It is slate grey."), said("The Tideline T4 weighs 250 grams.")]  # half of one case's checks
    pass_share, score = case_retentions(cases, base, reference, built, context)
    assert (pass_share.base, pass_share.reference, pass_share.built) == (0.0, 1.0, 0.5)
    assert (score.base, score.reference, score.built, score.share) == (0.0, 1.0, 0.75, 0.75)


def test_a_reference_answer_is_cut_at_the_case_limit(tmp_path: Path) -> None:
    (tmp_path / "cases.yaml").write_text(CASES, encoding="utf-8")
    case = next(iter(load_cases([tmp_path / "cases.yaml"])))
    runtime = FakeRuntime(write_genai_folder(tmp_path / "model"))
    prompt, answer = [ord(c) for c in "Q?"], [ord(c) for c in "Slate grey."]  # the fake decodes chr(id)
    item = ReferenceItem(CASE_PREFIX + case.id, "Q?", (*prompt, *answer), len(prompt), np.zeros((1, 1), np.int32),
                         np.zeros((1, 1), np.float32), np.zeros(1, np.float32))
    data = ReferenceData((item,), 256, 48, "ref")
    assert reference_answer(runtime, data, case, 48).text == "Slate grey."
    cut = reference_answer(runtime, data, case, 5)
    assert (cut.text, cut.stop_reason) == ("Slate", "length")
    with pytest.raises(KeyError, match="no answer to case 'weight'"):
        reference_answer(runtime, data, list(load_cases([tmp_path / "cases.yaml"]))[1], 48)
