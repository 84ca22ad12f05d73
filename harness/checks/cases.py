"""Case files: prompts, generation settings and assertions as data (YAML or JSONL).

Loaded and validated at session start; every error names the file, the line, the case id and
the field, so a typo costs one line of output, not a failed run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import regex
import yaml

from harness.checks.assertions import CHECKS, AnswerContext, Assertion
from harness.errors import HarnessError
from harness.locations import data_dir
from harness.runtime.protocol import Generation, Prompt, SearchOptions

SUFFIXES = (".yaml", ".yml", ".jsonl")


MOST_SCHEMA_BYTES = 64 * 1024
MOST_SCHEMA_NODES = 10_000  # values in an answer schema once its $refs are expanded


class CaseError(HarnessError):
    """A case file is unreadable or does not follow the schema."""


@dataclass(frozen=True)
class Case:
    id: str
    origin: str  # "file:line", shown in failures
    prompt: Prompt  # chat messages, or a raw string sent without the chat template
    options: SearchOptions
    assertions: tuple[Assertion, ...]
    threshold: float = 1.0  # weighted share of assertions that must pass
    repeat: int = 1
    pass_rate: float = 1.0  # share of the repeats that must pass
    reference: str | None = None  # golden answer, scored by the domain quality check
    keywords: tuple[str, ...] = ()
    description: str = ""

    @property
    def greedy(self) -> bool:
        return not self.options.do_sample

    def sample_options(self) -> list[SearchOptions]:
        """Options for each repeat: sampled repeats get seeds seed, seed + 1, ... so a run reproduces."""
        if self.greedy:
            return [self.options] * self.repeat
        first = self.options.seed or 0
        return [dataclasses.replace(self.options, seed=first + i) for i in range(self.repeat)]

    def judge(self, answer: Generation, context: AnswerContext) -> tuple[float, list[str]]:
        """Weighted share of passed assertions, and one line per assertion for the failure message."""
        lines, earned = [], 0.0
        for assertion in self.assertions:
            verdict = assertion.evaluate(answer, context)
            earned += assertion.weight * verdict.passed
            lines.append(f"  {'ok  ' if verdict.passed else 'FAIL'} {assertion.describe()}: {verdict.detail}")
        return earned / sum(a.weight for a in self.assertions), lines

    def passes(self, answers: Sequence[Generation], context: AnswerContext) -> bool:
        """Enough of the answers (one per repeat) reach the threshold."""
        passed = sum(self.judge(answer, context)[0] >= self.threshold for answer in answers)
        return passed / len(answers) >= self.pass_rate

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        return "\n".join(f"{m['role']}: {m['content']}" for m in self.prompt)


@dataclass(frozen=True)
class CaseSet:
    cases: tuple[Case, ...]
    files: tuple[Path, ...] = field(default=())

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)


def default_case_paths() -> tuple[Path, ...]:
    return (data_dir() / "cases",)


@functools.cache
def _schema() -> dict[str, Any]:
    return dict(json.loads((data_dir() / "schemas" / "cases.schema.json").read_text(encoding="utf-8")))


def case_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
            if not found:
                raise CaseError(f"{path} has no case files ({', '.join(SUFFIXES)}); "
                                "point --cases at a case file or a folder of them")
            files.extend(found)
        elif path.suffix in SUFFIXES:
            files.append(path)
        else:
            raise CaseError(f"{path} is not a case file; use a {', '.join(SUFFIXES)} file")
    return files


def load_cases(paths: Sequence[Path]) -> CaseSet:
    cases: list[Case] = []
    seen: dict[str, str] = {}
    files = case_files(paths)
    for path in files:
        for case in _load_file(path):
            if case.id in seen:
                raise CaseError(f"{case.origin}: case id {case.id!r} is already used at {seen[case.id]}; "
                                "case ids must be unique across the case files")
            seen[case.id] = case.origin
            cases.append(case)
    return CaseSet(tuple(cases), tuple(files))


def _load_file(path: Path) -> list[Case]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(f"cannot read case file {path}: {exc}") from exc
    if path.suffix == ".jsonl":
        return _load_jsonl(path, text)
    return _load_yaml(path, text)


def _load_jsonl(path: Path, text: str) -> list[Case]:
    cases = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CaseError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        _validate({"cases": [document]}, path, functools.partial(_same_line, number))
        cases.append(_case(document, {}, path, f"{path}:{number}"))
    if not cases:
        raise CaseError(f"{path} has no cases; write one JSON case per line")
    return cases


def _same_line(line: int, where: Sequence[str | int]) -> int:
    return line


def _load_yaml(path: Path, text: str) -> list[Case]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise CaseError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if node is None:
        raise CaseError(f"{path} is empty; see fixtures/cases/ for examples")
    if isinstance(document, list):  # a bare list of cases
        document, node = {"cases": document}, yaml.MappingNode("tag:yaml.org,2002:map", [
            (yaml.ScalarNode("tag:yaml.org,2002:str", "cases"), node)])
    _validate(document, path, lambda where: _line(node, where))
    defaults = document.get("defaults", {})
    return [_case(case, defaults, path, f"{path}:{_line(node, ['cases', i])}")
            for i, case in enumerate(document["cases"])]


def _line(node: yaml.Node, where: Sequence[str | int]) -> int:
    """1-based line of the YAML node at a JSON path (the deepest node that exists)."""
    for key in where:
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
        else:
            child = None
        if child is None:
            break
        node = child
    return int(node.start_mark.line) + 1


def _field(where: Sequence[str | int]) -> str:
    """``cases[3].assert[0].type`` -> ``assert[0].type`` (the case is named separately)."""
    inside = list(where[2:]) if where[:1] == ["cases"] else list(where)
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in inside).lstrip(".")
    return text or "(the case itself)" if where[:1] == ["cases"] else text or "(top level)"


def _case_label(document: Any, where: Sequence[str | int]) -> str:
    if len(where) >= 2 and where[0] == "cases" and isinstance(where[1], int):
        case = document["cases"][where[1]]
        if isinstance(case, Mapping) and isinstance(case.get("id"), str):
            return f"case {case['id']!r}, "
        return f"case #{where[1] + 1}, "
    return ""


def _fail(path: Path, line: int, document: Any, where: Sequence[str | int], problem: str) -> CaseError:
    return CaseError(f"{path}:{line}: {_case_label(document, where)}field {_field(where)}: {problem} "
                     "(schema: fixtures/schemas/cases.schema.json)")


def _validate(document: Any, path: Path, line_of: Callable[[Sequence[str | int]], int]) -> None:
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(_schema()).iter_errors(document))
    if error is not None:
        where: list[str | int] = list(error.absolute_path)
        message = _message(error)
        if error.validator == "additionalProperties":  # point at the unknown key itself
            known = list(error.schema.get("properties", {}))
            unknown = sorted(set(error.instance) - set(known))[0]
            where, message = [*where, unknown], f"unknown field; known fields: {', '.join(known)}"
        raise _fail(path, line_of(where), document, where, message)
    defaults = document.get("defaults", {}).get("assert", [])
    located: list[tuple[list[str | int], Any]] = [(["defaults", "assert", j], a) for j, a in enumerate(defaults)]
    located += [(["cases", i, "assert", j], a) for i, case in enumerate(document["cases"])
                for j, a in enumerate(case.get("assert", []))]
    for at, assertion in located:
        problem = _value_problem(assertion, path)
        if problem:
            raise _fail(path, line_of([*at, "value"]), document, [*at, "value"], problem)


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and isinstance(error.instance, Mapping) and "id" in error.instance:
        return "give exactly one of 'messages' (a chat) or 'prompt' (raw text)"
    if error.validator == "pattern" and error.absolute_path and error.absolute_path[-1] == "type":
        return f"unknown assertion type {error.instance!r}; known: {', '.join(CHECKS)} (any with a not- prefix)"
    return str(error.message)


def _value_problem(assertion: Mapping[str, Any], path: Path) -> str | None:
    kind = CHECKS[str(assertion["type"]).removeprefix("not-")][1]
    value = assertion.get("value")
    if kind == "none":
        return f"{assertion['type']} takes no value" if value is not None else None
    if value is None:
        return f"{assertion['type']} needs a value"
    if kind in ("str", "regex") and not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if kind == "regex":
        try:
            regex.compile(value)  # what runs it (harness.checks.assertions)
        except regex.error as exc:
            return f"is not a valid regular expression ({exc})"
    if kind == "str-list" and not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
        return "must be a non-empty list of strings"
    if kind == "int" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return "must be an integer >= 1"
    if kind == "schema":
        return _schema_problem(value, path)
    return None


def _schema_problem(value: Any, path: Path) -> str | None:
    try:
        answer_schema(value, path)
    except ValueError as exc:
        return str(exc)
    return None


def answer_schema(value: Any, path: Path) -> dict[str, Any]:
    """A json-schema assertion's schema (inline, or a file beside the case file), checked and bounded: a few
    hundred bytes of nested ``$ref`` aliases can expand exponentially and hang its validation. Raises ValueError
    with the problem."""
    if isinstance(value, str):
        target = path.parent / value
        try:
            if target.stat().st_size > MOST_SCHEMA_BYTES:
                raise ValueError(f"schema file {target} is over {MOST_SCHEMA_BYTES // 1024} KiB; an answer's schema "
                                 "is a few hundred bytes")
            value = json.loads(target.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"schema file {target} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"schema file {target} cannot be read ({exc})") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"schema file {target} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON schema (a mapping) or the path of a schema file")
    if _expanded_size(value, value, {}, set()) > MOST_SCHEMA_NODES:  # first: nothing walks it before this bound
        raise ValueError(f"expands to over {MOST_SCHEMA_NODES:,} subschemas through its $refs; a schema that large "
                         "could hang its validation: write it without nested aliases")
    try:
        jsonschema.Draft202012Validator.check_schema(value)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"is not a valid JSON schema ({exc.message})") from None
    return value


def _expanded_size(node: Any, root: Mapping[str, Any], sizes: dict[str, int], expanding: set[str]) -> int:
    """How many values the schema holds with each local ``$ref`` replaced by its target (a recursive reference
    counts once: validation follows it only as deep as the document goes)."""
    if isinstance(node, list):
        return 1 + sum(_expanded_size(item, root, sizes, expanding) for item in node)
    if not isinstance(node, dict):
        return 1
    total = 1 + sum(_expanded_size(item, root, sizes, expanding) for key, item in node.items() if key != "$ref")
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#") and ref not in expanding:
        if ref not in sizes:
            expanding.add(ref)
            sizes[ref] = _expanded_size(_pointer(root, ref), root, sizes, expanding)
            expanding.discard(ref)
        total += sizes[ref]
    return total


def _pointer(root: Mapping[str, Any], ref: str) -> Any:
    """The value a local JSON pointer (``#/$defs/a``) names; None where it names nothing."""
    node: Any = root
    for part in filter(None, ref[1:].split("/")):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, dict) else (
            node[int(part)] if isinstance(node, list) and part.isdigit() and int(part) < len(node) else None)
    return node


def _case(document: Mapping[str, Any], defaults: Mapping[str, Any], path: Path, origin: str) -> Case:
    options = {**defaults.get("options", {}), **document.get("options", {})}
    try:
        search = SearchOptions(**options)
    except HarnessError as exc:
        raise CaseError(f"{origin}: case {document['id']!r}, field options: {exc}") from exc
    assertions = tuple(_assertion(a, path) for a in [*defaults.get("assert", []), *document.get("assert", [])])
    prompt: Prompt = document["prompt"] if "prompt" in document else tuple(
        {"role": m["role"], "content": m["content"]} for m in document["messages"])
    setting = {**defaults, **document}
    if not assertions and "reference" not in document:
        raise CaseError(f"{origin}: case {document['id']!r} checks nothing; add an 'assert' list "
                        "or a 'reference' answer")
    return Case(
        id=document["id"], origin=origin, prompt=prompt, options=search, assertions=assertions,
        threshold=float(setting.get("threshold", 1.0)), repeat=int(setting.get("repeat", 1)),
        pass_rate=float(setting.get("pass_rate", 1.0)), reference=document.get("reference"),
        keywords=tuple(document.get("keywords", ())), description=document.get("description", ""),
    )


def _assertion(document: Mapping[str, Any], path: Path) -> Assertion:
    value = document.get("value")
    if document["type"].removeprefix("not-") == "json-schema":
        value = answer_schema(value, path)  # checked at load, where a problem is a CaseError
    return Assertion(document["type"], value, float(document.get("weight", 1.0)), document.get("threshold"))
