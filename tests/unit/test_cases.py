"""Case files load into cases, and every mistake stops with file, line, case id and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.checks.cases import CaseError, answer_schema, default_case_paths, load_cases

GOOD = """\
defaults:
  options: {max_new_tokens: 32}
  assert:
    - {type: no-template-leak}
cases:
  - id: first
    messages: [{role: user, content: "Hi"}]
    assert:
      - {type: icontains, value: hello, weight: 2}
  - id: sampled
    prompt: "raw text"
    options: {do_sample: true, temperature: 0.7, seed: 5}
    repeat: 3
    pass_rate: 0.5
    assert: [{type: not-contains, value: x}]
"""


def write(tmp_path: Path, text: str, name: str = "cases.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, name: str = "cases.yaml") -> str:
    path = write(tmp_path, text, name)
    with pytest.raises(CaseError) as caught:
        load_cases([path])
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}")
    return message


def test_defaults_merge_into_each_case(tmp_path: Path) -> None:
    first, sampled = load_cases([write(tmp_path, GOOD)])
    assert [a.type for a in first.assertions] == ["no-template-leak", "icontains"]
    assert first.options.max_new_tokens == 32 and first.greedy and first.origin.endswith("cases.yaml:6")
    assert sampled.prompt == "raw text" and not sampled.greedy and sampled.options.max_new_tokens == 32
    assert [o.seed for o in sampled.sample_options()] == [5, 6, 7]  # reproducible, yet distinct samples


def test_shipped_case_files_load() -> None:
    cases = load_cases(default_case_paths())
    assert len(cases.cases) >= 10 and {p.suffix for p in cases.files} == {".yaml", ".jsonl"}
    assert any(c.reference for c in cases) and any(not c.greedy for c in cases)


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD.replace("repeat: 3", "repeats: 3"), ":13: case 'sampled', field repeats: unknown field; known fields: id,"),
    (GOOD.replace("max_new_tokens: 32", "max_new_tokens: many"), ":2: field defaults.options.max_new_tokens: 'many'"),
    (GOOD.replace("{type: icontains", "{type: includes"), ":9: case 'first', field assert[0].type: unknown assertion"),
    (GOOD.replace("value: hello", "value: [hello]"), ":9: case 'first', field assert[0].value: must be a string"),
    (GOOD.replace("value: x}", "value: x, threshold: 2}"), "case 'sampled', field assert[0].threshold: 2 is greater"),
    (GOOD.replace('    prompt: "raw text"\n', ""), "case 'sampled', field (the case itself): give exactly one of"),
    (GOOD.replace("id: sampled", "id: first"), "case id 'first' is already used at"),
    (GOOD.replace("{type: no-template-leak}", "{type: regex, value: '('}"), "defaults.assert[0].value: is not a valid"),
    (GOOD.replace("    assert: [{type: not-contains, value: x}]\n", "").replace(
        "  assert:\n    - {type: no-template-leak}\n", ""), "case 'sampled' checks nothing"),
    (GOOD.replace("temperature: 0.7", "temperature: 0"), "field options.temperature: 0 is less than or equal"),
    ("cases:\n  - id: x\n    prompt: [oops\n", ":4: not valid YAML"),
    ("", "is empty"),
], ids=["unknown-field", "wrong-type", "unknown-assertion", "wrong-value-type", "threshold-range",
        "no-prompt", "duplicate-id", "bad-regex", "checks-nothing", "zero-temperature", "bad-yaml", "empty"])
def test_mistakes_name_file_line_case_and_field(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_jsonl_errors_give_the_line(tmp_path: Path) -> None:
    good = {"id": "a", "prompt": "x", "assert": [{"type": "contains", "value": "y"}]}
    bad = {**good, "id": "b", "assert": [{"type": "json-schema", "value": "missing.json"}]}
    lines = [json.dumps(good), "", json.dumps(bad)]
    assert ":3: case 'b', field assert[0].value: schema file" in error_of(tmp_path, "\n".join(lines), "c.jsonl")
    assert ":2: not valid JSON" in error_of(tmp_path, json.dumps(good) + "\n{nope\n", "d.jsonl")


def test_json_schema_file_is_read_relative_to_the_case_file(tmp_path: Path) -> None:
    (tmp_path / "person.json").write_text(json.dumps({"type": "object", "required": ["name"]}), encoding="utf-8")
    case = {"id": "a", "prompt": "x", "assert": [{"type": "json-schema", "value": "person.json"}]}
    (loaded,) = load_cases([write(tmp_path, json.dumps(case), "c.jsonl")])
    assert loaded.assertions[0].value == {"type": "object", "required": ["name"]}


def test_paths_must_hold_case_files(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match="has no case files"):
        load_cases([tmp_path])
    with pytest.raises(CaseError, match="is not a case file"):
        load_cases([write(tmp_path, "{}", "cases.json")])


def test_an_answer_schema_that_expands_exponentially_is_refused(tmp_path: Path) -> None:
    defs = {f"a{i}": {"allOf": [{"$ref": f"#/$defs/a{i + 1}"}] * 2} for i in range(20)}
    schema = {"$defs": {**defs, "a20": {"type": "string"}}, "$ref": "#/$defs/a0"}
    assert len(json.dumps(schema)) < 1500  # 1.4 KB
    with pytest.raises(ValueError, match="expands to over 10,000 subschemas"):
        answer_schema(schema, tmp_path / "cases.yaml")


def test_a_recursive_answer_schema_is_fine(tmp_path: Path) -> None:
    tree = {"$defs": {"node": {"type": "object", "properties": {
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}, "$ref": "#/$defs/node"}
    assert answer_schema(tree, tmp_path / "cases.yaml") == tree
