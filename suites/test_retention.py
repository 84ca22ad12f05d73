"""How much of the fine-tune the built model keeps (with --base-model).

Each metric is measured on the base model, on the fine-tuned reference (fp32, transformers) and on the built model;
retention = (built - base) / (reference - base) must reach the ``finetune_retention_min`` gate. A quantization that
erases what the fine-tune taught fails here with the three numbers, even when parity with the reference looks close:
parity measures distance from the fine-tune, retention measures what is left of its gain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from harness import CaseSet, Gates, ReportFinding, Runtime
from harness.checks.output_format import answer_context
from harness.checks.parity import ParityReport, ReferenceData
from harness.checks.retention import Retention, case_retentions, failures, log_likelihood, reference_answer


def _report(retentions: list[Retention], gates: Gates, record_property: Callable[[str, object], None],
            harness_finding: ReportFinding) -> None:
    for retention in retentions:
        record_property(f"retention_{retention.metric}", vars(retention) | {"share": retention.share})
        if not retention.measurable:
            harness_finding("no-finetune-gain", retention.line())
    problems = failures(retentions, gates)
    if problems:
        pytest.fail("the built model lost the fine-tune:\n  " + "\n  ".join(problems), pytrace=False)


def test_eval_texts_keep_the_fine_tune(harness_parity: ParityReport, harness_parity_reference: ReferenceData,
                                       harness_base_reference: ReferenceData, harness_gates: Gates,
                                       record_property: Callable[[str, object], None],
                                       harness_finding: ReportFinding) -> None:
    """Mean log-likelihood per token of the eval texts (your domain's with --eval-texts)."""
    built = [item.nll_candidate for item in harness_parity.items if not item.is_prompt]
    _report([log_likelihood(harness_base_reference, harness_parity_reference, built)], harness_gates,
            record_property, harness_finding)


def test_cases_keep_the_fine_tune(harness_runtime: Runtime, harness_cases: CaseSet,
                                  harness_parity_reference: ReferenceData, harness_base_reference: ReferenceData,
                                  harness_gates: Gates, record_property: Callable[[str, object], None],
                                  harness_finding: ReportFinding) -> None:
    """The greedy cases' pass share and mean score, each model answering greedily within the same token limit."""
    chat = harness_runtime.info.chat_template is not None
    cases = [case for case in harness_cases if case.greedy and (chat or isinstance(case.prompt, str))]
    if not cases:
        pytest.skip("no greedy case this model can answer; add cases with --cases")
    limit = harness_parity_reference.max_new_tokens
    built = [harness_runtime.generate(case.prompt, dataclasses.replace(
        case.options, max_new_tokens=min(case.options.max_new_tokens, limit))) for case in cases]
    base, reference = ([reference_answer(harness_runtime, data, case, min(case.options.max_new_tokens, limit))
                        for case in cases] for data in (harness_base_reference, harness_parity_reference))
    _report(case_retentions(cases, base, reference, built, answer_context(harness_runtime)), harness_gates,
            record_property, harness_finding)
