"""Parity of the built model with its fp32 reference (the source model run by transformers on CPU).

Both models read the same token ids. Each eval text must stay within the parity gates: perplexity
ratio, mean and 95th-percentile KL(reference || built) of the next-token distributions, and top-1
agreement. The whole set must too: the texts plus the reference's greedy answers to the eval
prompts and to the prompts of this run's cases (--cases).

Where the two greedy answers part is recorded, not gated: the first answer token the built model
ranks another token first, fed the reference's answer (its own greedy answer is the same tokens up to
there, so it parts there too; nothing is generated). The index is discrete and one near-tie moves it
from the end of an answer to its start; its first-token signal is top-1 agreement at one position,
which is gated over every position. Measured on the default model over 20 prompts: the int4 build's
answers part at the first token on 4 (median token 6), a degraded build's on 12 (median 0): apart
here, but one or two near-ties would move a limit's verdict.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness import Gates, ParityReport, ReportFinding, parity_failure


def _record(record_property: Callable[[str, object], None], figures: object) -> None:
    for name, value in vars(figures).items():
        record_property(name, value)


def _check(failure: str | None) -> None:
    if failure is not None:
        pytest.fail(failure, pytrace=False)


def test_text_within_parity_gates(harness_parity: ParityReport, harness_gates: Gates,
                                  record_property: Callable[[str, object], None], harness_eval_text: str) -> None:
    """Once per eval text: the shipped ones, or your domain's (--eval-texts)."""
    item = harness_parity.item(harness_eval_text)
    _record(record_property, item.figures)
    record_property("kl_series", [round(float(value), 5) for value in item.kl])
    _check(parity_failure(harness_eval_text, item.figures, harness_gates))


def test_whole_eval_set_within_parity_gates(harness_parity: ParityReport, harness_gates: Gates,
                                            record_property: Callable[[str, object], None],
                                            harness_finding: ReportFinding) -> None:
    _record(record_property, harness_parity.overall)
    divergences = harness_parity.greedy_divergences
    record_property("greedy_divergence", divergences)
    for name, value in harness_parity.greedy_summary().items():
        record_property(name, value)
    record_property("answer_figures", {item.id: vars(item.figures) for item in harness_parity.items if item.is_prompt})
    parted = ", ".join(f"{name} at token {index}" if index is not None else f"{name} same answer"
                       for name, index in divergences.items())
    if any(index is not None for index in divergences.values()):  # recorded, not gated (see the docstring)
        harness_finding("greedy-divergence", f"the greedy answers part from the fp32 reference's: {parted}")
    _check(parity_failure("whole eval set", harness_parity.overall, harness_gates,
                          f"greedy answers part from the reference's: {parted}"))
