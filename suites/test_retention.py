"""How much of the fine-tune the built model keeps (with --base-model).

Each metric is measured on the base model, on the fine-tuned reference (fp32, transformers) and on the built model;
retention = (built - base) / (reference - base) must reach the ``finetune_retention_min`` gate. A quantization that
erases what the fine-tune taught fails here with the three numbers, even when parity with the reference looks close:
parity measures distance from the fine-tune, retention measures what is left of its gain.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness import (
    CaseSet,
    ComputePaths,
    Gates,
    ParityReport,
    ReferenceData,
    ReportFinding,
    Settle,
    case_retention_verdict,
    report_retentions,
    text_retention,
)


def _fail(failure: str | None) -> None:
    if failure is not None:
        pytest.fail(failure, pytrace=False)


def test_eval_texts_keep_the_fine_tune(harness_parity: ParityReport, harness_parity_reference: ReferenceData,
                                       harness_base_reference: ReferenceData, harness_gates: Gates,
                                       record_property: Callable[[str, object], None],
                                       harness_finding: ReportFinding) -> None:
    """Mean log-likelihood per token of the eval texts (your domain's with --eval-texts)."""
    retention = text_retention(harness_parity, harness_base_reference, harness_parity_reference)
    _fail(report_retentions([retention], harness_gates, record_property, harness_finding))


def test_cases_keep_the_fine_tune(harness_paths: ComputePaths, harness_cases: CaseSet,
                                  harness_parity_reference: ReferenceData, harness_base_reference: ReferenceData,
                                  harness_gates: Gates, record_property: Callable[[str, object], None],
                                  harness_finding: ReportFinding, harness_verdict: Settle) -> None:
    """The greedy cases' pass share and mean score, each model answering greedily within the same token limit; the
    built model's answers judged on every compute path."""
    chat = harness_paths.primary.info.chat_template is not None
    cases = [case for case in harness_cases if case.greedy and (chat or isinstance(case.prompt, str))]
    if not cases:
        pytest.skip("no greedy case this model can answer; add cases with --cases")
    harness_verdict(case_retention_verdict(harness_paths, cases, harness_base_reference, harness_parity_reference,
                                           harness_gates, record_property, harness_finding))
