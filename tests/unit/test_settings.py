from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.builtins import builtin_gates
from harness.config.gates import declare, in_domain, resolve_gates
from harness.config.settings import check_execution_provider, resolve
from harness.errors import ConfigError

DECLARED = declare([builtin_gates()])


def _resolve(tmp_path: Path, cli=None, env=None, table: str = "", ini=None):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f"[tool.harness]\n{table}", encoding="utf-8")
    return resolve(cli or {}, env=env or {}, pyproject=pyproject, ini=ini or {}, ini_origin="pytest.ini",
                   rootdir=tmp_path)


def test_defaults(tmp_path: Path) -> None:
    settings = _resolve(tmp_path)
    assert (settings.model, settings.precision, settings.builder, settings.ep, settings.profile) == (
        None, "int4", "model-builder", "cpu", "full")
    assert settings.reports_dir == tmp_path / "reports"
    assert set(settings.origins.values()) == {"default"}


@pytest.mark.parametrize(
    ("cli", "env", "table", "ini", "expected", "origin"),
    [
        ({"precision": "fp32"}, {"HARNESS_PRECISION": "fp16"}, 'precision = "int8"', {"precision": "int4"},
         "fp32", "the command line"),
        ({}, {"HARNESS_PRECISION": "fp16"}, 'precision = "int8"', {"precision": "int4"},
         "fp16", "environment variable HARNESS_PRECISION"),
        ({}, {}, 'precision = "int8"', {"precision": "fp32"}, "int8", "[tool.harness]"),
        ({}, {}, "", {"precision": "fp32"}, "fp32", "harness_precision in pytest.ini"),
    ],
    ids=["cli-wins", "env-over-files", "pyproject-over-ini", "ini-over-default"],
)
def test_precedence(tmp_path: Path, cli, env, table, ini, expected, origin) -> None:
    settings = _resolve(tmp_path, cli, env, table, ini)
    assert settings.precision == expected
    assert settings.origins["precision"].startswith(origin)


def test_relative_path_in_pyproject_is_relative_to_that_file(tmp_path: Path) -> None:
    settings = _resolve(tmp_path, table='cache_dir = "cache"')
    assert settings.cache_dir == tmp_path / "cache"


@pytest.mark.parametrize(
    ("cli", "env", "table", "message"),
    [
        ({"precision": "int3"}, {}, "",
         "--precision 'int3' (from the command line) is not one of int4, int8, fp16, fp32"),
        ({}, {"HARNESS_BUILDER": "onnx"}, "",
         "--builder 'onnx' (from environment variable HARNESS_BUILDER) is not one of olive, model-builder"),
        ({}, {}, 'profile = "huge"', "--harness-profile 'huge' (from [tool.harness] in "),
        ({}, {}, 'colour = "red"', "unknown key(s) colour in [tool.harness] of "),
        ({"olive_config": "/nonexistent.json"}, {}, "",
         "--olive-config '/nonexistent.json' (from the command line) is not an existing file"),
    ],
    ids=["bad-precision-cli", "bad-builder-env", "bad-profile-pyproject", "unknown-key", "missing-olive-config"],
)
def test_bad_values_name_setting_and_origin(tmp_path: Path, cli, env, table, message) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _resolve(tmp_path, cli, env, table)
    assert str(excinfo.value).startswith(message)
    assert "\n" not in str(excinfo.value)


def test_olive_config_conflicts_with_model_builder(tmp_path: Path) -> None:
    workflow = tmp_path / "workflow.json"
    workflow.write_text('{"passes": {"builder": {"type": "ModelBuilder", "precision": "int4"}}}', encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot be combined with --builder model-builder"):
        _resolve(tmp_path, {"olive_config": str(workflow), "builder": "model-builder"})


def test_unavailable_execution_provider_is_refused() -> None:
    check_execution_provider("cpu", ["CPUExecutionProvider"])
    with pytest.raises(ConfigError, match="--ep cuda needs CUDAExecutionProvider"):
        check_execution_provider("cuda", ["CPUExecutionProvider"])


@pytest.mark.parametrize(("raw", "expected"), [
    ("int4", ("int4",)), ("int4,fp32", ("int4", "fp32")), (" fp32 , int4,fp32", ("fp32", "int4")),
    ("all", ("int4", "int8", "fp16", "fp32")),
])
def test_precision_lists(tmp_path: Path, raw: str, expected: tuple[str, ...]) -> None:
    settings = _resolve(tmp_path, {"precision": raw})
    assert settings.precisions == expected and settings.precision == expected[0]


def test_bad_precision_in_a_list_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--precision 'int4,int3' \(from the command line\) is not one of"):
        _resolve(tmp_path, {"precision": "int4,int3"})


def test_cases_are_repeatable_and_relative_to_their_file(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        (tmp_path / name).write_text("", encoding="utf-8")
    assert _resolve(tmp_path, {"cases": [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]}).cases == (
        tmp_path / "a.yaml", tmp_path / "b.yaml")
    assert _resolve(tmp_path, table='cases = ["c.yaml"]').cases == (tmp_path / "c.yaml",)
    with pytest.raises(ConfigError, match=r"--cases '.*d.yaml' \(from \[tool.harness\] in .*\) does not exist"):
        _resolve(tmp_path, table='cases = ["d.yaml"]')


def test_gates_resolve_with_precedence_and_clear_errors(tmp_path: Path) -> None:
    gates = resolve_gates(DECLARED, ["quality_token_f1_min=0.7"],
                          table={"quality_rouge_l_min": 0.1, "quality_token_f1_min": 0.2},
                          table_origin="[tool.harness.gates]", ini_lines=["quality_keyword_recall_min = 0.5"],
                          ini_origin="pytest.ini")
    assert gates["quality_token_f1_min"] == 0.7 and gates.origins["quality_token_f1_min"] == "the command line"
    assert gates["quality_rouge_l_min"] == 0.1 and gates["quality_keyword_recall_min"] == 0.5
    assert gates.check("quality_rouge_l_min", 0.1) and not gates.check("quality_rouge_l_min", 0.09)
    with pytest.raises(ConfigError, match=r"unknown gate 'nope' \(from the command line\); known gates: "):
        resolve_gates(DECLARED, ["nope=1"])
    with pytest.raises(ConfigError, match="must be NAME=VALUE"):
        resolve_gates(DECLARED, ["quality_rouge_l_min"])
    with pytest.raises(ConfigError, match="is not a finite number"):
        resolve_gates(DECLARED, table={"quality_rouge_l_min": "high"}, table_origin="[tool.harness.gates]")


def test_a_list_for_the_precision_is_its_comma_separated_form(tmp_path: Path) -> None:
    settings = _resolve(tmp_path, table='precision = ["fp32", "int4"]')
    assert settings.precisions == ("fp32", "int4")  # not fp32 alone, with int4 silently dropped


@pytest.mark.parametrize(("env", "table", "message"), [
    ({"HARNESS_MODEL": ""}, "", "--model is empty (from environment variable HARNESS_MODEL)"),
    ({"HARNESS_CACHE_DIR": " "}, "", "--harness-cache-dir is empty (from environment variable HARNESS_CACHE_DIR)"),
    ({}, 'model = ""', "--model is empty (from [tool.harness] in "),
    ({}, "precision = []", "--precision is an empty list (from [tool.harness] in "),
    ({}, 'model = ["a", "b"]', "--model takes one value, not a list (from [tool.harness] in "),
    ({}, "precision = true", "--precision = True (from [tool.harness] in "),
    ({"HARNESS_PRECISON": "int8"}, "",
     "environment variable HARNESS_PRECISON is not a harness setting; did you mean HARNESS_PRECISION?"),
], ids=["empty-variable", "blank-variable", "empty-in-pyproject", "empty-list", "list-for-one-value", "boolean",
        "misspelt-variable"])
def test_empty_mistyped_and_misspelt_values_are_refused(tmp_path: Path, env, table, message) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _resolve(tmp_path, env=env, table=table)
    assert str(excinfo.value).startswith(message)


def test_variables_of_the_harness_itself_and_of_other_tools_are_not_misspellings(tmp_path: Path) -> None:
    _resolve(tmp_path, env={"HARNESS_FAULT_SEGFAULT": "x", "HARNESS_SUITE_PROFILE": "p", "OTHER_HARNESS": "1",
                            "HARNESS_BUILD_ID": "42", "HARNESS_ACCOUNT_ID": "a"})  # Harness CI sets these


@pytest.mark.parametrize(("workflow", "message"), [
    ("{{{", r"is not a readable Olive workflow \(JSONDecodeError"),
    ('{"passes": {"q": {"type": "OnnxQuantization"}}}', "has no ModelBuilder pass"),
    ("[]", "has no ModelBuilder pass"),
], ids=["not-json", "no-model-builder", "not-an-object"])
def test_an_olive_workflow_is_checked_before_anything_runs(tmp_path: Path, workflow: str, message: str) -> None:
    path = tmp_path / "workflow.json"
    path.write_text(workflow, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        _resolve(tmp_path, {"olive_config": str(path), "builder": "olive"})


@pytest.mark.parametrize(("gate", "value"), [
    ("quality_token_f1_min", "5"), ("parity_top1_agreement_min", "-2"), ("robustness_timeout_s", "-1"),
    ("robustness_timeout_s", "0"), ("compare_other_cpu_diff_max", "101"), ("parity_kl_mean_max", "-0.1"),
])
def test_a_gate_outside_what_it_limits_is_refused(gate: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"gate {gate} = '{re.escape(value)}' \(from the command line\) is outside"):
        resolve_gates(DECLARED, [f"{gate}={value}"])


def test_a_gate_at_the_edge_of_its_range_is_accepted() -> None:
    gates = resolve_gates(DECLARED, ["quality_token_f1_min=0", "parity_top1_agreement_min=1"])
    assert gates["quality_token_f1_min"] == 0 and gates["parity_top1_agreement_min"] == 1


def test_every_gate_declares_a_range_its_default_lies_in() -> None:
    for gate in DECLARED.values():
        assert in_domain(gate.default, gate.domain), gate.name
