"""A peft adapter through the plugin, with the fakes: its base from --base-model or from its config, the merge planned
(in the header, the memory plan and the provenance) and cached by both models' hashes, and --base-model beside a
model that is not an adapter. The store holds the merge already (a fake merged folder under the merge's key), so no
peft runs here; tests/e2e/test_adapters.py merges for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.preparation.cache import ModelStore
from harness.preparation.hashing import HashMemo
from harness.preparation.pipeline import make_plan
from harness.preparation.sources import detect_source, with_base
from harness.testing.adapters import write_adapter_folder
from harness.testing.fakes import FakeBuilder, write_hf_folder
from tests.plugin.test_plugin import builds, env

__all__ = ["env"]  # the fixture, imported for pytest


def seed_merge(cache: Path, adapter: Path, base: Path) -> Path:
    """A merged folder in the store under the key the session computes (as if peft had merged it)."""
    plan = make_plan(with_base(detect_source(adapter), detect_source(base)), "int4", "cpu", FakeBuilder(),
                     HashMemo(cache / "hashes.json"))

    def fake_merge(out: Path) -> None:
        write_hf_folder(out)

    return ModelStore(cache).get_or_build("hf", plan.merge_key, fake_merge, {"fake merge": True}).path


def run(pytester: pytest.Pytester, env: dict[str, Path], *args: str) -> pytest.RunResult:
    return pytester.runpytest(f"--harness-cache-dir={env['cache']}", *args, str(env["suite"]))


def test_an_adapter_is_built_from_its_merge_and_cached_by_both_models(pytester: pytest.Pytester,
                                                                      env: dict[str, Path]) -> None:
    base = env["model"]
    adapter = write_adapter_folder(pytester.path / "lora", base=str(base))
    merged = seed_merge(env["cache"], adapter, base)
    first = run(pytester, env, f"--model={adapter}", f"--base-model={base}")
    first.assert_outcomes(passed=4)
    first.stdout.fnmatch_lines([
        f"harness: model {adapter} (peft-adapter), sha256 *",
        f"harness: base model {base} (hf-folder, --base-model), sha256 *; the adapter merges into it with peft 0.21.2 "
        f"(cache hit {merged})",
        "harness: cache miss, will build into *"])
    (report,) = (pytester.path / "reports").iterdir()
    assert (next(report.glob("build-*.log"))).read_text(encoding="utf-8").startswith(f"fake build of {merged} at int4")
    provenance = json.loads((report / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["source_kind"] == "peft-adapter" and provenance["base_model"] == str(base)
    assert provenance["base_model_kind"] == "hf-folder" and provenance["merged_model"] == str(merged)
    assert provenance["base_sha256"] and provenance["merge_key"] == merged.name
    # The base its config names is the same model: the same keys, so the build is found.
    second = run(pytester, env, f"--model={adapter}")
    second.assert_outcomes(passed=4)
    second.stdout.fnmatch_lines([f"harness: base model {base} (hf-folder, named by the adapter's config)*",
                                 "harness: cache hit *"])
    assert builds(env) == 1


def test_the_merge_is_planned_in_the_header_and_its_memory(pytester: pytest.Pytester, env: dict[str, Path]) -> None:
    adapter = write_adapter_folder(pytester.path / "lora", base=str(env["model"]))
    header = run(pytester, env, f"--model={adapter}", "--co")
    header.stdout.fnmatch_lines([
        f"harness: base model {env['model']} (hf-folder, named by the adapter's config), sha256 *; the adapter merges "
        f"into it with peft 0.21.2 (miss, will merge into {env['cache'] / 'hf'}/*)",
        "harness: memory * (available on this machine); plan: the adapter merge * GiB, *: fits"])
    tight = run(pytester, env, f"--model={adapter}", "--harness-memory=100MiB")
    assert tight.ret == pytest.ExitCode.USAGE_ERROR
    tight.stderr.fnmatch_lines(["ERROR: harness: memory plan: the adapter merge needs about 525 MiB at its peak (the "
                                "base's 0 MiB of weights, loaded and merged), and 100 MiB is what --harness-memory "
                                "allows, from the command line; merge it where there is more memory (harness build "
                                "--model=ADAPTER --base-model=BASE on a larger machine) and pass the built folder with "
                                "--model"])


def test_base_model_beside_a_model_that_is_not_an_adapter_is_checked_and_recorded(pytester: pytest.Pytester,
                                                                                 env: dict[str, Path]) -> None:
    base = write_hf_folder(pytester.path / "base")
    result = run(pytester, env, f"--model={env['model']}", f"--base-model={base}")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([f"harness: model {env['model']} (hf-folder), sha256 *",
                                 f"harness: base model {base} (hf-folder, --base-model)"])
    (report,) = (pytester.path / "reports").iterdir()
    provenance = json.loads((report / "provenance.json").read_text(encoding="utf-8"))
    assert (provenance["base_model"], provenance["merge_key"], provenance["base_sha256"]) == (str(base), None, None)
