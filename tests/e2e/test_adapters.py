"""A peft adapter as users have them, end to end: a seeded LoRA of the default model, merged by peft into its base (the
default model's Hugging Face folder, or its GGUF through the cached conversion), built, validated by the suites, and
found in the cache the second time; a tiny bf16 model's merge keeps its dtype; a merge that fails is one line."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from harness.capacity.model_facts import safetensors_header
from harness.preparation.sources import default_model_path
from harness.session import HarnessSession
from harness.testing.adapters import make_lora_adapter, make_tiny_model, write_adapter_folder
from tests.e2e.support import ROOT

SUITES = [str(ROOT / "suites" / "test_generation.py"), str(ROOT / "suites" / "test_template.py")]
ADAPTED = {"q_proj", "v_proj"}  # make_lora_adapter's targets


def pytest_run(reports: Path, *args: str, cache: Path | None = None,
               suites: list[str] = SUITES) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    if cache is not None:
        environment["HARNESS_CACHE_DIR"] = str(cache)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
                           f"--harness-reports={reports}", *args, *suites], cwd=ROOT, capture_output=True, text=True,
                          timeout=1200, env=environment, encoding="utf-8")


def provenance(reports: Path) -> dict[str, object]:
    (run,) = [folder for folder in reports.iterdir() if (folder / "provenance.json").is_file()]
    return dict(json.loads((run / "provenance.json").read_text(encoding="utf-8")))


def tensors(folder: Path) -> dict[str, tuple[str, Path, int, int]]:
    """Each weight's dtype, file and byte range, from the safetensors headers (no torch: bf16 has no numpy type)."""
    found = {}
    for shard in sorted(folder.glob("*.safetensors")):
        start = 8 + struct.unpack("<Q", shard.read_bytes()[:8])[0]
        for name, entry in safetensors_header(shard).items():
            first, last = entry["data_offsets"]
            found[name] = (entry["dtype"], shard, start + first, start + last)
    return found


def data(where: tuple[str, Path, int, int]) -> bytes:
    with where[1].open("rb") as handle:
        handle.seek(where[2])
        return handle.read(where[3] - where[2])


def changed_tensors(base: Path, merged: Path) -> set[str]:
    """The weights whose bytes differ between two Hugging Face folders of the same names and dtypes."""
    before, after = tensors(base), tensors(merged)
    assert set(before) == set(after)
    assert all(before[name][0] == after[name][0] for name in before), "the merge changed a dtype"
    return {name for name in before if data(before[name]) != data(after[name])}


@pytest.fixture(scope="module")
def base_folder(default_hf_folder: Path) -> Path:
    return default_hf_folder


@pytest.fixture(scope="module")
def adapter(base_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded LoRA of q_proj and v_proj (r 4, alpha 1: the answers stay the base's, the weights do not)."""
    return make_lora_adapter(base_folder, tmp_path_factory.mktemp("adapter") / "lora")


def check_merged(merged: Path, base_folder: Path) -> None:
    changed = changed_tensors(base_folder, merged)
    assert changed and {name.split(".")[-2] for name in changed} == ADAPTED, sorted(changed)[:5]
    assert len(changed) == 2 * 30  # both projections of each of the 30 layers


def test_an_adapter_on_a_hugging_face_base_is_merged_built_validated_and_cached(
        built: HarnessSession, base_folder: Path, adapter: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"  # a cache of its own: the first run merges and builds, whatever ran before
    args = (f"--model={adapter}", f"--base-model={base_folder}")
    first = pytest_run(tmp_path / "first", *args, cache=cache)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert f"harness: model {adapter} (peft-adapter)" in first.stdout
    assert f"harness: base model {base_folder} (hf-folder, --base-model)" in first.stdout
    assert "harness: merging the adapter lora into" in first.stdout and "harness: cache miss" in first.stdout
    record = provenance(tmp_path / "first")
    assert record["base_model"] == str(base_folder) and record["source_kind"] == "peft-adapter"
    check_merged(Path(str(record["merged_model"])), base_folder)
    assert built.prepared is not None
    ours, theirs = Path(str(record["built_model"])) / "model.onnx.data", built.prepared.path / "model.onnx.data"
    assert ours.stat().st_size == theirs.stat().st_size and ours.read_bytes() != theirs.read_bytes()
    second = pytest_run(tmp_path / "second", *args, cache=cache)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-2000:]
    assert "harness: cache hit" in second.stdout and "merging" not in second.stdout
    assert provenance(tmp_path / "second")["built_model"] == record["built_model"]


def test_an_adapter_on_the_default_gguf_merges_into_its_cached_conversion(base_folder: Path, adapter: Path,
                                                                          tmp_path: Path) -> None:
    gguf = default_model_path()
    result = pytest_run(tmp_path, f"--model={adapter}", f"--base-model={gguf}", suites=SUITES[:1])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"harness: base model {gguf} (gguf, --base-model)" in result.stdout
    record = provenance(tmp_path)
    assert record["base_model_kind"] == "gguf"
    check_merged(Path(str(record["merged_model"])), base_folder)  # the same weights as the folder the GGUF converts to


def test_the_merge_keeps_the_base_s_dtype(tmp_path: Path) -> None:
    """peft's merge (``python -m harness.preparation.merge``) into a tiny bf16 llama: the weights it targets change, the
    others do not, and every weight stays bf16; the adapter's own tokenizer goes with the merged model."""
    base = make_tiny_model(tmp_path / "base", "bfloat16")
    adapter = make_lora_adapter(base, tmp_path / "adapter", r=2, alpha=2)
    (adapter / "tokenizer.json").write_text('{"the adapter": "tokenizer"}', encoding="utf-8")
    out = tmp_path / "merged"
    out.mkdir()
    subprocess.run([sys.executable, "-m", "harness.preparation.merge", str(base), str(adapter), str(out)], check=True,
                   capture_output=True)
    assert {name.split(".")[-2] for name in changed_tensors(base, out)} == ADAPTED
    assert {entry[0] for entry in tensors(out).values()} == {"BF16"}
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["dtype"] == "bfloat16"
    assert (out / "tokenizer.json").read_text(encoding="utf-8") == '{"the adapter": "tokenizer"}'


def test_a_merge_peft_refuses_is_one_line_naming_its_log(tmp_path: Path) -> None:
    """An adapter whose config's rank is not its weights' (what the metadata checks do not read): peft refuses it."""
    base = make_tiny_model(tmp_path / "base", "float32")
    modules = {f"model.layers.{i}.self_attn.q_proj": (32, 32) for i in range(2)}
    adapter = write_adapter_folder(tmp_path / "adapter", str(base), modules, rank=2, r=3)
    result = pytest_run(tmp_path / "reports", f"--model={adapter}", cache=tmp_path / "cache", suites=SUITES[:1])
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout[-3000:] + result.stderr[-2000:]
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("ERROR: harness: adapter merge failed (exit 1): the adapter's weights do not fit the base "
                           "model's shapes (peft: size mismatch): it was fine-tuned from another model; pass that one "
                           "with --base-model; full log: "), line
    assert Path(line.rsplit("full log: ", 1)[1]).is_file()
