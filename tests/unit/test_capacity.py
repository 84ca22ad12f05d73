"""The memory plan's pieces without a model: sizes, what the machine has (control groups faked in a folder), model
facts from metadata, and the plan's verdicts and lines."""

from __future__ import annotations

import json
import re
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from harness.capacity.memory import Available, available_memory, cgroup_room, format_size, parse_size
from harness.capacity.model_facts import model_facts
from harness.capacity.plan import Need, build_need, choose_reference, plan, suite_need
from harness.errors import SourceError
from harness.testing.fakes import write_genai_folder, write_hf_folder

GB = 10**9
GIB = 1024**3


@pytest.mark.parametrize(("raw", "expected"), [("8GiB", 8 * 1024**3), ("8G", 8 * 1024**3), ("7.5GB", 7_500_000_000),
                                                ("512MiB", 512 * 1024**2), ("1024", 1024), (" 2 gb ", 2 * GB)])
def test_sizes_read_binary_and_decimal_units(raw: str, expected: int) -> None:
    assert parse_size(raw) == expected


@pytest.mark.parametrize("raw", ["", "0GB", "-1G", "8 parsecs", "G8", "eight"])
def test_a_bad_size_says_what_a_size_looks_like(raw: str) -> None:
    with pytest.raises(ValueError, match=r"is not a memory size above zero, e\.g\. 8GiB"):
        parse_size(raw)


def test_sizes_print_in_the_binary_units_they_are_written_in() -> None:
    assert (format_size(8 * 1024**3), format_size(512 * 1024**2)) == ("8.0 GiB", "512 MiB")


def fake_cgroups(tmp_path: Path, lines: str) -> Path:
    (tmp_path / "cgroup").write_text(lines, encoding="utf-8")
    return tmp_path / "cgroup"


def test_a_v2_limit_counts_inactive_page_cache_as_free(tmp_path: Path) -> None:
    root = tmp_path / "fs"
    group = root / "ci" / "job"
    group.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("memory\n", encoding="utf-8")
    (group / "memory.max").write_text(f"{4 * GB}\n", encoding="utf-8")
    (group / "memory.current").write_text(f"{3 * GB}\n", encoding="utf-8")
    (group / "memory.stat").write_text(f"anon 100\ninactive_file {GB}\n", encoding="utf-8")
    (root / "ci" / "memory.max").write_text("max\n", encoding="utf-8")  # an unlimited parent changes nothing
    assert cgroup_room(fake_cgroups(tmp_path, "0::/ci/job\n"), root) == 2 * GB


def test_a_v1_limit_and_its_hierarchical_limit(tmp_path: Path) -> None:
    group = tmp_path / "fs" / "memory" / "runner"
    group.mkdir(parents=True)
    (group / "memory.limit_in_bytes").write_text("9223372036854771712\n", encoding="utf-8")  # unlimited here...
    (group / "memory.usage_in_bytes").write_text(f"{GB}\n", encoding="utf-8")
    (group / "memory.stat").write_text(
        f"hierarchical_memory_limit {3 * GB}\ntotal_inactive_file 0\n", encoding="utf-8"
    )  # ...not above
    assert cgroup_room(fake_cgroups(tmp_path, "4:memory:/runner\n0::/\n"), tmp_path / "fs") == 2 * GB


def test_no_limit_is_no_room_figure(tmp_path: Path) -> None:
    group = tmp_path / "fs" / "memory" / "runner"
    group.mkdir(parents=True)
    (group / "memory.limit_in_bytes").write_text("9223372036854771712\n", encoding="utf-8")
    (group / "memory.usage_in_bytes").write_text(f"{GB}\n", encoding="utf-8")
    assert cgroup_room(fake_cgroups(tmp_path, "4:memory:/runner\n"), tmp_path / "fs") is None
    assert cgroup_room(fake_cgroups(tmp_path, "not a cgroup line\n\n"), tmp_path / "fs") is None  # no traceback


def test_a_stated_memory_wins_and_says_where_it_came_from() -> None:
    assert available_memory(8 * GB, "the command line") == Available(
        8 * GB, "what --harness-memory allows, from the command line")
    assert available_memory().bytes > 0


def test_facts_come_from_the_safetensors_header_and_config(tmp_path: Path) -> None:
    facts = model_facts(write_hf_folder(tmp_path / "hf"))
    assert (facts.kind, facts.parameters, facts.largest_tensor, facts.vocab_size) == ("hf-folder", 16, 16, 256)
    built = model_facts(write_genai_folder(tmp_path / "built", context_length=4096))
    assert (built.kind, built.parameters, built.context_length) == ("onnx-genai", None, 4096)


def test_a_corrupt_safetensors_file_is_one_line(tmp_path: Path) -> None:
    folder = write_hf_folder(tmp_path / "hf")
    (folder / "model.safetensors").write_bytes(b"not really weights")
    with pytest.raises(SourceError, match=r"model.safetensors is not a safetensors file \(a header of \d+ bytes\); "
                                          r"save the model again"):
        model_facts(folder)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", 5) + b"[1,2]")
    with pytest.raises(SourceError, match="its header is not a table of tensors"):
        model_facts(folder)


def test_a_truncated_gguf_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + struct.pack("<Q", 10**6))
    with pytest.raises(SourceError, match="its GGUF header cannot be read"):
        model_facts(path)


def test_the_plan_refuses_the_first_phase_that_cannot_fit_in_one_line(tmp_path: Path) -> None:
    source = model_facts(write_hf_folder(tmp_path / "hf"))
    big = Need("the int4 build", 12 * GIB, "the model builder holds 4.9 bytes a parameter", "build it elsewhere")
    refused = plan(Available(8 * GIB, "available on this machine"), [big], [])
    assert refused.refusal() == ("memory plan: the int4 build needs about 12.0 GiB at its peak (the model builder "
                                 "holds 4.9 bytes a parameter), and 8.0 GiB is available on this machine; build it "
                                 "elsewhere")
    assert "\n" not in (refused.refusal() or "")
    assert plan(Available(8 * GB, "x"), [build_need("int4", source)], []).refusal() is None


def test_suites_that_cannot_fit_skip_and_the_header_says_so(tmp_path: Path) -> None:
    facts = model_facts(write_genai_folder(tmp_path / "built"))
    suites = [suite_need("test_template.py", facts, GB), suite_need("test_foundry_local.py", facts, 5 * GB)]
    memory = plan(Available(4 * GIB, "available on this machine"), [], suites)
    assert memory.skip_reason(memory.suites["test_template.py"]) is None
    reason = memory.skip_reason(memory.suites["test_foundry_local.py"])
    assert reason is not None and reason.startswith("memory plan: test_foundry_local.py needs about ")
    (line,) = memory.lines()
    assert line.startswith("harness: memory 4.0 GiB (available on this machine); plan: the suites up to ")
    assert re.search(r"cannot fit, so will skip: test_foundry_local.py \(\d+\.\d GiB\)$", line), line


def test_the_reference_falls_back_to_bf16_only_when_fp32_cannot_fit(tmp_path: Path) -> None:
    folder = write_hf_folder(tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**config, "vocab_size": 32}), encoding="utf-8")
    facts = model_facts(folder)
    roomy, tight = Available(100 * GB, "x"), Available(1, "x")
    assert choose_reference("auto", facts, facts, 0, roomy)[0] == "fp32"
    assert choose_reference("auto", facts, facts, 0, tight)[0] == "bf16"
    assert choose_reference("fp32", facts, facts, 0, tight)[0] == "fp32"
    # A reference stored in fp32 (a GGUF's conversion): bf16 would be a copy beside the mapped file, more, not less.
    fp32_file, bf16_file = (replace(facts, parameters=10**9, weight_bytes=size) for size in (4 * 10**9, 2 * 10**9))
    precision, need = choose_reference("auto", fp32_file, facts, 0, tight)
    assert precision == "fp32" and not need.way_out.startswith("pass --reference-precision bf16")
    precision, need = choose_reference("auto", bf16_file, facts, 0, tight)
    assert precision == "bf16" and "mapped from its file" in need.basis
    assert choose_reference("fp32", bf16_file, facts, 0, tight)[1].way_out.startswith("pass --reference-precision bf16")


def test_a_suite_whose_copies_can_do_without_the_session_model_runs_with_it_released(tmp_path: Path) -> None:
    facts = model_facts(write_genai_folder(tmp_path / "built"))
    size = 2 * GIB  # a 3.8B model's int4 weights
    suites = [suite_need(name, facts, size) for name in ("test_malformed.py", "test_foundry_local.py",
                                                               "test_cases.py")]
    needs = {need.phase: need for need in suites}
    released = suite_need("test_malformed.py", facts, size, released=True)
    assert released.bytes < needs["test_malformed.py"].bytes
    memory = plan(Available(released.bytes + 1, "x"), [], suites, facts=facts, model_bytes=size, longest_prompt=2048)
    assert memory.skip_reason(needs["test_malformed.py"]) is None  # it runs, the session's model released
    reason = memory.release_reason("test_malformed.py")
    assert reason is not None and reason.startswith("test_malformed.py needs ") and "with it released" in reason
    assert memory.release_reason("test_cases.py") is None  # its checks use the session's model: nothing to release
    assert memory.skip_reason(needs["test_cases.py"]) is None  # it runs, without its twin
    assert memory.twin_skip_reason("test_cases.py") is not None
    roomy = plan(Available(10**15, "x"), [], suites, facts=facts, model_bytes=size, longest_prompt=2048)
    assert roomy.release_reason("test_malformed.py") is None  # it fits beside the model: nothing released
    # The header says what the session does: the suites that run released or without the twin are not "skipped".
    (line,) = memory.lines()
    skipped = [need.phase for need in suites if memory.skip_reason(need) is not None]
    assert skipped == re.findall(r"(test_\w+\.py) \(", line.partition("so will skip: ")[2])
    assert "test_malformed.py" not in skipped and "test_cases.py" not in skipped
    assert f"peak {format_size(max(released.bytes, memory.as_run(needs['test_cases.py']).bytes))}" in line, line


def test_a_long_prompt_of_a_suite_that_can_release_the_session_model_runs_released(tmp_path: Path) -> None:
    """The malformed suite's whole-context prompt is planned as the suite is: with the session's model released."""
    facts = model_facts(write_genai_folder(tmp_path / "built", context_length=32768))
    size, tokens = 2 * GIB, 32767
    beside = suite_need("test_malformed.py", facts, size, tokens)
    alone = suite_need("test_malformed.py", facts, size, tokens, released=True)
    memory = plan(Available(alone.bytes, "x"), [], [suite_need("test_malformed.py", facts, size)], facts=facts,
                  model_bytes=size)
    assert alone.bytes < beside.bytes and memory.prompt_skip_reason("test_malformed.py", tokens) is None
    tight = replace(memory, available=Available(alone.bytes - 1, "x"))
    reason = tight.prompt_skip_reason("test_malformed.py", tokens)
    assert reason is not None
    assert reason.startswith(f"memory plan: test_malformed.py with a {tokens}-token prompt needs")


def test_without_the_twin_is_reckoned_not_subtracted(tmp_path: Path) -> None:
    """A suite's peak without the twin is reckoned from its shape (released too, where its copies can do without the
    session's model), and the session both releases and drops the twin when only that fits; below it, it skips."""
    facts = model_facts(write_genai_folder(tmp_path / "built"))
    size = 2 * GIB
    released = suite_need("test_foundry_local.py", facts, size, released=True)
    lean = suite_need("test_foundry_local.py", facts, size, released=True, twin=False)
    assert lean.bytes <= released.bytes and not lean.twin and lean.adjusted == "the session's model released, " \
        "without the twin"
    memory = plan(Available(lean.bytes, "x"), [], [suite_need("test_foundry_local.py", facts, size)], facts=facts,
                  model_bytes=size)
    assert memory.as_run(memory.suites["test_foundry_local.py"]) == lean
    assert memory.twin_skip_reason("test_foundry_local.py") is not None
    assert memory.release_reason("test_foundry_local.py") is not None
    below = replace(memory, available=Available(lean.bytes - 1, "x"))
    assert below.skip_reason(below.suites["test_foundry_local.py"]) is not None


@pytest.mark.parametrize("field", ["max_position_embeddings", "hidden_size"])
def test_a_config_field_of_the_wrong_type_is_one_line(tmp_path: Path, field: str) -> None:
    folder = write_hf_folder(tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    broken = {**config, field: None if field == "hidden_size" else "long"}
    (folder / "config.json").write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(SourceError, match=rf"^{re.escape(str(folder))}: its size cannot be read from its metadata "
                                          r"\((TypeError|ValueError): .*\); fix its config.json"):
        model_facts(folder)
