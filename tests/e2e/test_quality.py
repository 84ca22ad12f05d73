"""The cases suite and the precision comparison on the real default model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.testing.fakes import clone_model
from tests.e2e.support import ROOT

CASES_SUITE = str(ROOT / "suites" / "test_cases.py")
PRECISION_SUITE = str(ROOT / "suites" / "test_precisions.py")
WRONG = """\
cases:
  - id: capital-wrong-city
    messages: [{role: user, content: "Which city is the capital of Germany?"}]
    assert: [{type: contains, value: Rome}, {type: stops-cleanly}]
"""


def test_wrong_expectation_fails_readably_on_the_real_model(pytester: pytest.Pytester, built_path: Path) -> None:
    cases = pytester.path / "wrong.yaml"
    cases.write_text(WRONG, encoding="utf-8")
    result = pytester.runpytest_inprocess(CASES_SUITE, "-p", "no:cacheprovider", f"--model={built_path}",
                                          f"--cases={cases}", f"--harness-reports={pytester.path / 'reports'}")
    result.assert_outcomes(passed=1, failed=1, skipped=1)  # the format check passes; no golden answers
    result.stdout.fnmatch_lines([
        "case 'capital-wrong-city' (*wrong.yaml:2) failed: score 0.50 below its threshold 1.00",
        "  prompt: '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
        "<|im_end|>\\n<|im_start|>user\\nWhich city is the capital of Germany?<|im_end|>\\n<|im_start|>assistant"
        "\\n'",  # what the model read: its template's default system prompt included
        "  answer: 'The capital of Germany is Berlin*",
        "  FAIL contains 'Rome': missing ['Rome']",
        "  ok   stops-cleanly: ended by eos after * tokens",
    ])
    (run,) = (pytester.path / "reports").iterdir()
    checks = {c["id"]: c for c in json.loads((run / "results.json").read_text(encoding="utf-8"))["tests"]}
    passing = checks["test_cases.py::test_output_format[capital-wrong-city]"]
    assert passing["outcome"] == "passed"  # a passing check's answer is kept too, with the prompt as read
    (answer,) = passing["answers"]
    assert answer["answer"].startswith("The capital of Germany is Berlin") and answer["stop_reason"] == "eos"
    assert answer["prompt"].startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_wrong_eos_id_fails_the_stop_and_leak_checks(pytester: pytest.Pytester, built_path: Path) -> None:
    """With <|endoftext|> as eos, the model's <|im_end|> no longer stops it: the answer runs on and
    the skipped control token is caught among the generated ids."""
    model = clone_model(built_path, pytester.path / "wrong-eos",
                        lambda config: config["model"].update(eos_token_id=0))
    result = pytester.runpytest_inprocess(CASES_SUITE, "-p", "no:cacheprovider", f"--model={model}",
                                          f"--harness-reports={pytester.path / 'reports'}",
                                          "-k", "capital-germany and not geo")
    result.assert_outcomes(failed=2, deselected=result.parseoutcomes()["deselected"])
    result.stdout.fnmatch_lines([
        "*FAIL stops-cleanly: ran to the length limit (96 tokens) without an eos token",
        "*generated control token ids [[]2*] at positions*",
    ])


def test_wrong_eos_id_fails_the_domain_quality_gates(pytester: pytest.Pytester, built_path: Path) -> None:
    """Answers that run on past their end score low against the golden answers (the degraded
    quantization's effect on them is tested beside the parity gates)."""
    model = clone_model(built_path, pytester.path / "wrong-eos",
                        lambda config: config["model"].update(eos_token_id=0))
    result = pytester.runpytest_inprocess(CASES_SUITE, "-p", "no:cacheprovider", f"--model={model}",
                                          f"--harness-reports={pytester.path / 'reports'}", "-k", "test_domain_quality")
    result.assert_outcomes(failed=1, deselected=result.parseoutcomes()["deselected"])
    result.stdout.fnmatch_lines(["domain quality below its gates: mean token_f1 0.* gate quality_token_f1_min *; "
                                 "mean rouge_l 0.* gate quality_rouge_l_min *"])  # measured 0.26 and 0.26


def test_precision_table_for_every_precision_in_one_command(
    pytester: pytest.Pytester, built_path: Path, tmp_path: Path
) -> None:
    """--precision all: builds int8, fp16 and fp32 from the default source (cached after the first run), measures
    the three that run, reports fp16 with the runtime's reason, recommends int4."""
    reports = tmp_path / "reports"
    result = pytester.runpytest_inprocess(PRECISION_SUITE, "-p", "no:cacheprovider", "--precision=all",
                                          f"--harness-reports={reports}")
    result.assert_outcomes(passed=1)
    (table,) = reports.glob("*/precisions.json")
    rows = {row["precision"]: row for row in json.loads(table.read_text(encoding="utf-8"))}
    assert list(rows) == ["int4", "int8", "fp16", "fp32"]
    int4, int8, fp16, fp32 = rows.values()
    assert fp32["size_ratio_fp32"] == 1.0  # int4 0.16 and int8 0.49 of it, measured
    assert 0.1 < int4["size_ratio_fp32"] < int8["size_ratio_fp32"] < 0.7
    assert int4["passed"] and int8["passed"] and fp32["passed"]
    assert not fp16["passed"] and "Shape mismatch attempting to re-use buffer" in fp16["reason"]
    assert "fp16 is not supported on CPU" in fp16["reason"]
    assert fp32["parity_ppl_ratio"] == pytest.approx(1.0, abs=1e-3) and fp32["parity_top1_agreement"] == 1.0
    assert int4["parity_kl_mean"] > 10 * int8["parity_kl_mean"] > 0  # measured 0.36 and 0.004
    result.stdout.fnmatch_lines(["*Recommendation: **int4**, the smallest precision that passes every quality gate."])
