"""Parity on the real default model: the int4 build passes the parity gates, a degraded int4 build
(the model builder with block size 256) fails them and the domain quality gates, and the fp32 build
matches the reference.

The suite runs in-process (pytester) with the model given as a user would: ``--model`` a built
folder and ``--reference`` the Hugging Face folder it was built from.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.checks.cases import default_case_paths, load_cases
from harness.checks.parity import GATES, log_softmax, measure_parity
from harness.checks.reference import EvalPrompt, EvalSet, load_eval_set, reference_data
from harness.errors import ContextOverflow
from harness.preparation.builders import Builder, ModelBuilderBuilder
from harness.preparation.hashing import HashMemo
from harness.preparation.pipeline import make_plan, prepare
from harness.runtime.genai import GenAIRuntime
from harness.session import HarnessSession
from tests.e2e.support import ROOT, progress

SUITE = str(ROOT / "suites" / "test_parity.py")
CASES_SUITE = str(ROOT / "suites" / "test_cases.py")
TEXT_TESTS = {f"test_text_within_parity_gates[{text.id}]" for text in load_eval_set().texts}
ALL_TESTS = {*TEXT_TESTS, "test_whole_eval_set_within_parity_gates"}


def suite_eval_set() -> EvalSet:
    """What the suite compares on by default (eval set and shipped cases): one cached reference for all tests."""
    cases = load_cases(default_case_paths())
    return load_eval_set().with_prompts([EvalPrompt(f"case-{case.id}", case.prompt) for case in cases])


def build(session: HarnessSession, precision: str, builder: Builder) -> Path:
    """A variant of the default model, built once into the harness's cache."""
    plan = make_plan(session.source, precision, session.settings.ep, builder,
                     HashMemo(session.settings.cache_dir / "hashes.json"))
    return prepare(plan, session.store, builder, session.claim_run_dir(), progress).path


@pytest.fixture(scope="module")
def reference(default_hf_folder: Path) -> Path:
    return default_hf_folder


@pytest.fixture(scope="module")
def degraded(built: HarnessSession) -> Path:
    return build(built, "int4", ModelBuilderBuilder(extra_options=("block_size=256",)))


def outcomes(pytester: pytest.Pytester, *args: str) -> tuple[dict[str, set[str]], str]:
    """Test names per outcome, and the failure and skip texts."""
    recorder = pytester.inline_run(SUITE, "-p", "no:cacheprovider", f"--harness-reports={pytester.path / 'reports'}",
                                   *args)
    reports = recorder.listoutcomes()
    names = {outcome: {report.head_line for report in group}  # type: ignore[misc]
             for outcome, group in zip(("passed", "skipped", "failed"), reports, strict=True)}
    text = "\n".join(str(report.longrepr) for group in reports[1:] for report in group)
    return names, text


def test_int4_build_passes_the_parity_gates(pytester: pytest.Pytester, built_path: Path, reference: Path) -> None:
    names, text = outcomes(pytester, f"--model={built_path}", f"--reference={reference}")
    assert names == {"passed": ALL_TESTS, "skipped": set(), "failed": set()}, text


def test_degraded_build_fails_every_parity_gate(pytester: pytest.Pytester, degraded: Path, reference: Path) -> None:
    names, text = outcomes(pytester, f"--model={degraded}", f"--reference={reference}")
    assert names["failed"] == ALL_TESTS, text
    for item, least in (("text-list", 2.2), ("whole eval set", 1.6)):  # measured 2.54 and 1.88 (0.18 builder)
        found = re.search(rf"{item}: the built model departs from the reference: perplexity ratio ([\d.]+)", text)
        assert found is not None and float(found.group(1)) > least, text
    for gate in GATES:  # each gate is broken by the degraded build somewhere
        assert f" is {'above' if gate.bound == 'max' else 'below'} {gate.name} " in text, gate.name


def test_degraded_build_fails_the_domain_quality_gates(pytester: pytest.Pytester, degraded: Path) -> None:
    """The same seeded defect, seen by the golden answers: their means fall below the quality gates."""
    result = pytester.runpytest_inprocess(CASES_SUITE, "-p", "no:cacheprovider", f"--model={degraded}",
                                          f"--harness-reports={pytester.path / 'reports'}", "-k", "test_domain_quality")
    result.assert_outcomes(failed=1, deselected=result.parseoutcomes()["deselected"])
    # Which golden answers the defect breaks depends on the CPU's int8 kernels (0.50 on AVX-512 VNNI: "Toronto" and
    # "Venus" lost; 0.25 on AVX2): any mean below the gate is the verdict.
    found = re.search(r"domain quality below its gates: mean keyword_recall (\d\.\d+) over 6 cases, "
                      r"gate quality_keyword_recall_min at least (\d\.\d+)", result.stdout.str())
    assert found is not None, result.stdout.str()
    assert float(found[1]) < float(found[2])


def test_onnx_model_without_reference_skips_with_the_reason(pytester: pytest.Pytester, built_path: Path) -> None:
    names, text = outcomes(pytester, f"--model={built_path}")
    assert names["skipped"] == ALL_TESTS
    assert "no reference model: the source is an ONNX model; pass --reference PATH" in text


def test_fp32_build_matches_the_reference(built: HarnessSession, reference: Path) -> None:
    """fp32 ONNX and fp32 transformers agree to float rounding: the positions line up and the math is right."""
    fp32 = build(built, "fp32", ModelBuilderBuilder())
    runtime = GenAIRuntime(fp32)
    try:
        data = reference_data(reference, runtime, suite_eval_set(), built.settings.cache_dir, built.claim_run_dir(),
                              progress)
        report = measure_parity(runtime, data)
    finally:
        runtime.close()
    overall = report.overall
    assert overall.positions == sum(len(item.kl) for item in report.items) > 800
    assert overall.top1_agreement == 1.0, overall.summary()
    # Measured: perplexity ratio 1.0000000, KL at most 7e-10 (float32 rounding), against 0.4 mean KL at int4.
    assert abs(overall.ppl_ratio - 1) < 1e-4 and overall.kl_max < 1e-6, overall.summary()
    assert set(report.greedy_divergences.values()) == {None}, report.greedy_divergences


def test_logits_cover_every_position_and_keep_one_free(built_path: Path) -> None:
    runtime = GenAIRuntime(built_path)
    try:
        text = "The capital of France is Paris."
        ids = runtime.encode(text)
        logits = runtime.logits(ids)
        assert logits.shape == (len(ids), runtime.info.vocab_size)
        picked = log_softmax(logits[:-1])[range(len(ids) - 1), ids[1:]]
        assert picked == pytest.approx(runtime.score(text), abs=1e-5)
        with pytest.raises(ContextOverflow, match="8192 tokens do not fit the model's context of 8192"):
            runtime.logits([1] * runtime.info.context_length)  # onnxruntime-genai would abort the process
    finally:
        runtime.close()


DOMAIN = ROOT / "fixtures" / "eval" / "domain_example"
DOMAIN_TESTS = {f"test_text_within_parity_gates[text-{name}]" for name in ("tutor-photosynthesis",
                                                                            "tutor-periodic-table")}


def test_parity_is_measured_on_the_users_domain_texts(pytester: pytest.Pytester, built_path: Path, reference: Path,
                                                     degraded: Path) -> None:
    """--eval-texts puts the domain's texts in place of the shipped ones: the int4 build passes on them, the
    degraded build fails on them."""
    names, text = outcomes(pytester, f"--model={built_path}", f"--reference={reference}", f"--eval-texts={DOMAIN}")
    assert names == {"passed": {*DOMAIN_TESTS, "test_whole_eval_set_within_parity_gates"}, "skipped": set(),
                     "failed": set()}, text
    names, text = outcomes(pytester, f"--model={degraded}", f"--reference={reference}", f"--eval-texts={DOMAIN}")
    assert names["failed"] >= DOMAIN_TESTS, text
