"""The worked example (examples/fine-tune), end to end: the default model fine-tuned with LoRA on a fictional product's
facts (trained once, cached by the hash of its data and recipe), validated as users would with
``pytest --model=ADAPTER --base-model=BASE --cases=... --eval-texts=...``: the int4 build keeps the fine-tune, and a
build that erased it (the base model's own build, judged against the fine-tune) fails the retention gate with its
numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.builtins import make_builder
from harness.config.settings import resolve
from harness.session import HarnessSession
from tests.e2e.support import ROOT, progress

EXAMPLE = ROOT / "examples" / "fine-tune"
SUITE = str(ROOT / "suites" / "test_retention.py")
TESTS = {"test_eval_texts_keep_the_fine_tune", "test_cases_keep_the_fine_tune"}
# The adapter depends on the host: bf16 autocast where the CPU computes bf16 natively, fp32 elsewhere (train.py). At
# int4 the bf16 one keeps all of the cases' gain (1.00, AVX-512 BF16 host); the fp32 one, trained on an AVX2-only host,
# keeps 0.89 of it (3 of 27 gained cases lost on both compute paths), under the default gate of 0.9. The example's
# gate is 0.8: a build that erased the fine-tune (under 0.3) still fails it by far.
EXAMPLE_GATE = "--gate=finetune_retention_min=0.8"


@pytest.fixture(scope="module")
def base(default_hf_folder: Path) -> Path:
    """What the example fine-tunes: the default model as a Hugging Face folder."""
    return default_hf_folder


@pytest.fixture(scope="module")
def adapter(built: HarnessSession, base: Path) -> Path:
    """The example's adapter, trained by its script (a few minutes on 2 cores; then found in the cache)."""
    done = subprocess.run([sys.executable, str(EXAMPLE / "train.py"), f"--base={base}",
                           f"--cache-dir={built.settings.cache_dir}"], capture_output=True, text=True, timeout=2400,
                          check=False, encoding="utf-8")
    assert done.returncode == 0, done.stderr[-3000:]
    folder = Path(done.stdout.strip().splitlines()[-1])
    assert (folder / "adapter_config.json").is_file(), done.stdout
    return folder


@pytest.fixture(scope="module")
def merged(adapter: Path, base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The adapter merged into its base (the fine-tune as a whole model; cached by both hashes)."""
    settings = resolve({"reports_dir": str(tmp_path_factory.mktemp("merge-reports")), "model": str(adapter),
                        "base_model": str(base)}, env=os.environ, rootdir=ROOT)
    folder = HarnessSession.open(settings, make_builder(settings)).reference_folder(progress)
    assert folder is not None
    return folder


def retention(pytester: pytest.Pytester, base: Path, *args: str) -> tuple[dict[str, set[str]], str]:
    """Test names per outcome, and the failure texts, of the retention suite on the example's cases and texts."""
    recorder = pytester.inline_run(SUITE, "-p", "no:cacheprovider", f"--base-model={base}", EXAMPLE_GATE,
                                   f"--harness-reports={pytester.path / 'reports'}",
                                   f"--cases={EXAMPLE / 'cases.yaml'}", f"--eval-texts={EXAMPLE / 'eval'}", *args)
    reports = recorder.listoutcomes()
    names = {outcome: {report.head_line.split("::")[-1] for report in group}  # type: ignore[misc]
             for outcome, group in zip(("passed", "skipped", "failed"), reports, strict=True)}
    return names, "\n".join(str(report.longrepr) for report in reports[2])


def test_the_int4_build_keeps_the_fine_tune(pytester: pytest.Pytester, adapter: Path, base: Path) -> None:
    names, text = retention(pytester, base, f"--model={adapter}")
    assert names["passed"] == TESTS, text


def test_a_build_that_erased_the_fine_tune_fails_with_its_numbers(pytester: pytest.Pytester, built_path: Path,
                                                                  merged: Path, base: Path) -> None:
    """The base model's int4 build stands for a quantization that erased the fine-tune: judged against the fine-tuned
    reference, it keeps none of the gain (retention about 0 on every metric)."""
    names, text = retention(pytester, base, f"--model={built_path}", f"--reference={merged}")
    assert names["failed"] == TESTS, text
    shares = [float(share) for share in re.findall(r"retention (-?[\d.]+), gate finetune_retention_min at least 0\.8",
                                                   text)]
    assert len(shares) == 3 and all(share < 0.3 for share in shares), text
