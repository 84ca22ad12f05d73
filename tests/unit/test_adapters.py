"""A peft adapter as --model: detected, given its base (--base-model or the one its config names), checked against it
from metadata, and planned (its merge keyed by both hashes, its memory in the plan). The merge itself, by peft, is
tested in tests/e2e/test_adapters.py."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from harness.builtins import make_builder
from harness.capacity.memory import GIB, Available
from harness.capacity.model_facts import ModelFacts
from harness.capacity.plan import merge_need
from harness.config.settings import resolve
from harness.errors import SourceError
from harness.preparation.adapters import MERGEABLE, PROMPT_LEARNING, UNMERGEABLE
from harness.preparation.cache import ModelStore
from harness.preparation.hashing import HashMemo
from harness.preparation.merge import tokenizer_files
from harness.preparation.pipeline import make_plan
from harness.preparation.sources import (
    ModelSource,
    SourceKind,
    default_model_path,
    detect_base,
    detect_source,
    with_base,
)
from harness.session import HarnessSession
from harness.testing.adapters import write_adapter_folder
from harness.testing.fakes import FakeBuilder, write_genai_folder, write_hf_folder


def adapter_with_base(adapter: Path, base: Path | None = None) -> tuple[SourceKind, Path | None]:
    source = with_base(detect_source(adapter), None if base is None else detect_base(base))
    return source.kind, None if source.base is None else source.base.path


def error(adapter: Path, base: Path | None = None) -> str:
    with pytest.raises(SourceError) as excinfo:
        adapter_with_base(adapter, base)
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_an_adapter_folder_is_detected_and_takes_the_base_its_config_names(tmp_path: Path) -> None:
    base = write_hf_folder(tmp_path / "base")
    adapter = write_adapter_folder(tmp_path / "adapter", base=str(base))
    assert detect_source(adapter).kind is SourceKind.ADAPTER
    assert adapter_with_base(adapter) == (SourceKind.ADAPTER, base)


def test_base_model_wins_over_the_base_the_config_names(tmp_path: Path) -> None:
    other = write_hf_folder(tmp_path / "other")
    adapter = write_adapter_folder(tmp_path / "adapter", base="HuggingFaceTB/SmolLM2-135M-Instruct")
    assert adapter_with_base(adapter, other) == (SourceKind.ADAPTER, other)


def test_a_relative_base_is_read_from_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = write_hf_folder(tmp_path / "models" / "base")
    monkeypatch.chdir(tmp_path)
    assert adapter_with_base(write_adapter_folder(tmp_path / "adapter", base="models/base"))[1] == base


@pytest.mark.parametrize(("base", "expected"), [
    (None, "names no base model (base_model_name_or_path is empty); pass the model it was fine-tuned from with "
           "--base-model=PATH"),
    ("HuggingFaceTB/SmolLM2-135M-Instruct",
     "the adapter's base model is 'HuggingFaceTB/SmolLM2-135M-Instruct' on the Hugging Face hub "
     "(base_model_name_or_path in adapter_config.json), and the harness reads local files only; download it"),
    ("/nowhere/base", "the adapter's base model /nowhere/base (base_model_name_or_path in adapter_config.json) is not "
                      "on this machine; pass the model it was fine-tuned from with --base-model=PATH"),
])
def test_an_adapter_without_a_base_here_names_base_model(tmp_path: Path, base: str | None, expected: str) -> None:
    adapter = write_adapter_folder(tmp_path / "adapter", base=base)
    message = error(adapter)
    assert message.startswith(f"--model {adapter}: ") and expected in message


def test_a_base_that_is_not_a_model_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("x", encoding="utf-8")
    adapter = write_adapter_folder(tmp_path / "adapter", base=str(tmp_path / "notes"))
    assert error(adapter).startswith(f"--model {adapter}: its base model {tmp_path / 'notes'}: found notes.txt but no "
                                     "config.json")
    genai = write_genai_folder(tmp_path / "genai")
    assert error(adapter, genai).startswith(f"--base-model {genai} is a onnx-genai model; pass the model you "
                                            "fine-tuned from as a Hugging Face folder or a GGUF file")
    with pytest.raises(SourceError, match=r"^--base-model .*adapter is a peft adapter; pass the model it was"):
        detect_base(adapter)


@pytest.mark.parametrize(("config", "expected"), [
    ("{", "adapter_config.json is not valid JSON (Expecting property name"),
    ("[1]", "adapter_config.json holds a list, not an object"),
    ('{"r": 8}', "adapter_config.json has no peft_type (LORA, ...), so it is not a peft adapter's config"),
    ('{"peft_type": "PREFIX_TUNING"}',
     "peft_type PREFIX_TUNING cannot be merged into the base model (a prompt-learning method: its virtual tokens are "
     "no weights to merge)"),
    ('{"peft_type": "XLORA"}', "peft_type XLORA cannot be merged into the base model (peft cannot merge it)"),
    ('{"peft_type": "NEWLORA"}', "peft_type NEWLORA cannot be merged into the base model (not a method peft 0.21.2 "
                                 "knows)"),
    ('{"peft_type": "LORA", "task_type": "SEQ_CLS"}', "task_type SEQ_CLS is not CAUSAL_LM"),
    ('{"peft_type": "LORA", "base_model_name_or_path": 3}', "base_model_name_or_path is a int, not a string"),
])
def test_a_bad_adapter_config_is_one_line(tmp_path: Path, config: str, expected: str) -> None:
    adapter = write_adapter_folder(tmp_path / "adapter", base=str(write_hf_folder(tmp_path / "base")))
    (adapter / "adapter_config.json").write_text(config, encoding="utf-8")
    with pytest.raises(SourceError) as excinfo:
        detect_source(adapter)
    assert str(excinfo.value).startswith(f"--model {adapter}: ") and expected in str(excinfo.value)


def test_an_adapter_without_weights_or_beside_a_model_is_refused(tmp_path: Path) -> None:
    adapter = write_adapter_folder(tmp_path / "adapter", base=None)
    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(SourceError, match=r"a peft adapter folder without adapter_model\.safetensors"):
        detect_source(adapter)
    both = write_adapter_folder(write_hf_folder(tmp_path / "both"), base=None)
    with pytest.raises(SourceError, match=r"the folder holds a model \(config.json, model.safetensors\) and a peft "
                                          r"adapter \(adapter_config.json\); keep one of them"):
        detect_source(both)
    config_beside = write_adapter_folder(tmp_path / "config-beside", base=None)  # the base's config, saved with it
    (config_beside / "config.json").write_text("{}", encoding="utf-8")
    assert detect_source(config_beside).kind is SourceKind.ADAPTER


def test_an_adapter_that_does_not_fit_its_base_is_refused_from_metadata(tmp_path: Path) -> None:
    base = write_hf_folder(tmp_path / "base")  # one layer of width 4, its one weight named embed.weight
    wide = write_adapter_folder(tmp_path / "wide", str(base), {"model.layers.0.self_attn.q_proj": (896, 896)})
    assert error(wide).endswith("the adapter's model.layers.0.self_attn.q_proj maps 896 to 896 features, and no "
                                "weight of the base model has a dimension of 896; an adapter merges into the model it "
                                f"was fine-tuned from, and {base} is not it: pass that with --base-model")
    deep = write_adapter_folder(tmp_path / "deep", str(base), {"model.layers.7.self_attn.q_proj": (4, 4)})
    assert "the adapter adapts model.layers.7.self_attn.q_proj, in layer 7, and the base model has 1 layers" in error(
        deep)
    named = write_adapter_folder(tmp_path / "named", str(base), {"embed": (4, 8)})
    assert "the adapter's embed maps 4 to 8 features, and the base model's weight of that name is [4, 4]" in error(
        named)
    assert adapter_with_base(write_adapter_folder(tmp_path / "fits", str(base)))[1] == base


def peft_types() -> set[str]:
    """The members of the installed peft's PeftType, read from its source (importing peft imports torch: seconds)."""
    spec = importlib.util.find_spec("peft")
    assert spec is not None and spec.submodule_search_locations
    source = Path(spec.submodule_search_locations[0], "utils", "peft_types.py").read_text(encoding="utf-8")
    (enum,) = [node for node in ast.parse(source).body if isinstance(node, ast.ClassDef) and node.name == "PeftType"]
    return {target.id for node in enum.body if isinstance(node, ast.Assign) for target in node.targets
            if isinstance(target, ast.Name)}


def test_the_mergeable_methods_are_peft_s_own() -> None:
    assert set(MERGEABLE) | set(PROMPT_LEARNING) | set(UNMERGEABLE) == peft_types()
    assert not set(MERGEABLE) & (set(PROMPT_LEARNING) | set(UNMERGEABLE))


def test_the_merge_and_the_build_are_keyed_by_both_models(tmp_path: Path) -> None:
    memo = HashMemo(tmp_path / "hashes.json")
    base, other = write_hf_folder(tmp_path / "base"), write_hf_folder(tmp_path / "other")
    (other / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes()[:-1] + b"\x01")
    adapter = detect_source(write_adapter_folder(tmp_path / "adapter", base=str(base)))
    plans = [make_plan(with_base(adapter, detect_source(b)), "int4", "cpu", FakeBuilder(), memo) for b in (base, other)]
    assert all(p.merge_key and p.base_hash and not p.convert_key for p in plans)
    assert plans[0].merge_key != plans[1].merge_key and plans[0].key != plans[1].key
    plain = make_plan(detect_source(base), "int4", "cpu", FakeBuilder(), memo)
    assert (plain.merge_key, plain.base_hash) == ("", "") and plain.source_hash == plans[0].base_hash
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF\x03\x00rest")
    on_gguf = make_plan(ModelSource(adapter.path, SourceKind.ADAPTER, base=detect_source(gguf)), "int4", "cpu",
                        FakeBuilder(), memo)
    assert on_gguf.convert_key == make_plan(detect_source(gguf), "int4", "cpu", FakeBuilder(), memo).convert_key


def test_the_tokenizer_comes_from_the_adapter_when_it_saved_one(tmp_path: Path) -> None:
    base, adapter = tmp_path / "base", tmp_path / "adapter"
    for folder, names in ((base, ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")),
                          (adapter, ("chat_template.jinja",))):
        folder.mkdir()
        for name in names:
            (folder / name).write_text(folder.name, encoding="utf-8")
    assert tokenizer_files(base, adapter) == [base / "tokenizer.json", base / "tokenizer_config.json",
                                              adapter / "chat_template.jinja"]
    (adapter / "tokenizer.json").write_text("adapter", encoding="utf-8")
    assert tokenizer_files(base, adapter) == [adapter / "tokenizer.json", adapter / "chat_template.jinja"]


@pytest.mark.parametrize(("weight_bytes", "peak_mib"), [(538_090_336, 903), (988_097_824, 1427),
                                                         (3_087_467_144, 3391)])
def test_the_merge_s_planned_peak_is_above_each_measured_one(weight_bytes: int, peak_mib: int) -> None:
    """benchmarks/scale.py measure MODEL --phases merge: SmolLM2 (fp32), the Qwen2.5-0.5B and 1.5B shapes (bf16)."""
    facts = ModelFacts("hf-folder", weight_bytes // 2, weight_bytes, 0, 8192, 49152, 24, 2, 64)
    need = merge_need(facts)
    assert peak_mib * 2**20 < need.bytes < peak_mib * 2**20 + 0.2e9
    assert need.phase == "the adapter merge" and "harness build --model=ADAPTER --base-model=BASE" in need.way_out


def test_the_plan_runs_the_conversion_and_the_merge_only_where_the_cache_lacks_them(tmp_path: Path) -> None:
    gguf = default_model_path()
    adapter = write_adapter_folder(tmp_path / "a", str(gguf), {"model.layers.0.self_attn.q_proj": (576, 576)})
    store = ModelStore(tmp_path / "cache")

    def must_run(model: Path) -> tuple[HarnessSession, list[str]]:
        settings = resolve({"model": str(model), "cache_dir": str(store.root),
                            "reports_dir": str(tmp_path / "reports")}, env={}, rootdir=tmp_path)
        session = HarnessSession.open(settings, make_builder(settings))
        return session, [need.phase for need in session.plan_memory(None, Available(64 * GIB, "a test")).must_run]

    def cached(key: str) -> None:
        store.get_or_build("hf", key, lambda out: None, {})

    assert must_run(gguf)[1] == ["the GGUF conversion", "the int4 build"]
    session, phases = must_run(adapter)
    assert phases == ["the GGUF conversion", "the adapter merge", "the int4 build"]
    cached(session.plan.convert_key)
    assert must_run(gguf)[1] == ["the int4 build"]
    assert must_run(adapter)[1] == ["the adapter merge", "the int4 build"]
    cached(session.plan.merge_key)
    assert must_run(adapter)[1] == ["the int4 build"]


def test_base_model_is_a_setting_like_the_others(tmp_path: Path) -> None:
    base = write_hf_folder(tmp_path / "base")
    (tmp_path / "pyproject.toml").write_text('[tool.harness]\nbase_model = "base"\n', encoding="utf-8")
    from_file = resolve({}, env={}, pyproject=tmp_path / "pyproject.toml", rootdir=tmp_path)
    assert from_file.base_model == base and from_file.origins["base_model"].startswith("[tool.harness] in ")
    from_env = resolve({}, env={"HARNESS_BASE_MODEL": str(base)}, rootdir=tmp_path)
    assert from_env.origins["base_model"] == "environment variable HARNESS_BASE_MODEL"
    from_cli = resolve({"base_model": str(base)}, env={"HARNESS_BASE_MODEL": "/nope"}, rootdir=tmp_path)
    assert from_cli.base_model == base and from_cli.origins["base_model"] == "the command line"
