"""A run as ``results.json`` holds it: its format (schema, version, text), found in a folder of runs, and read back
checked against the results schema.

The writer is ``harness.report.results``; the readers are ``harness compare``, ``--harness-baseline``, ``harness
history`` and ``--harness-ab=RUN``. A run that cannot be read, or that breaks the schema, is one line naming the file,
the field and the fix (``CompareError``), never a traceback at the end of a session.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.locations import data_dir
from harness.text import clip

FORMAT = "onnx-slm-harness-results"
SCHEMA_VERSION = 2  # 2: a comparison verdict of within or inconclusive (1 said unchanged), broken checks
RESULTS_FILE = "results.json"
SCHEMA_FILE = "results.schema.json"  # in fixtures/schemas/
# What a reader needs of a run, by where it is in the schema: the schema requires every field a session writes (of
# its version), a reader only these; every other field that is present must have the schema's type.
READ_REQUIRED: dict[tuple[str, ...], list[str]] = {
    (): ["format", "schema_version", "run", "key", "tests"],
    ("properties", "run"): ["id", "started"],
    ("properties", "tests", "items"): ["id"],
    ("properties", "totals"): [],
    ("properties", "key"): [],  # a key property missing reads as one that differs: the comparison says so
}


class CompareError(HarnessError):
    """A run to compare cannot be read (missing, not JSON, not a harness results file)."""


@dataclass(frozen=True)
class Run:
    """One run's results.json."""

    path: Path
    data: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.data["run"]["id"])

    @property
    def started(self) -> str:
        return str(self.data["run"]["started"])

    @property
    def key(self) -> dict[str, str]:
        return {name: str(value) for name, value in self.data["key"].items()}

    def tests(self) -> dict[str, Mapping[str, Any]]:
        return {str(test["id"]): test for test in self.data["tests"]}


def dump_run(results: Mapping[str, Any]) -> str:
    """results.json's text, as the run recorder saves it: strict JSON (a NaN or infinity is a bug, not a number)."""
    return json.dumps(results, indent=2, allow_nan=False)


def load_run(path: Path) -> Run:
    """A run from its folder or its results.json, checked against the results schema (every field present has its
    type, every number is finite); a one-line CompareError on anything else, naming the field."""
    try:
        file = path / RESULTS_FILE if path.is_dir() and path.name != RESULTS_FILE else path
        if not path.exists():
            raise CompareError(f"{path}: no such file or folder; pass a run folder (reports/<run>/) "
                               f"or its {RESULTS_FILE}")
        if file.is_dir():
            raise CompareError(f"{file} is a folder, not a file; pass a run folder (reports/<run>/) written by a "
                               "finished harness session, or its results.json")
        if not file.is_file():
            raise CompareError(f"{path} has no {RESULTS_FILE}; pass a run folder (reports/<run>/) written by "
                               "a finished harness session")
        text = file.read_bytes()
    except OSError as exc:
        raise CompareError(f"{path} cannot be read ({exc.strerror or exc}); check the path") from None
    if not text.strip():
        raise CompareError(f"{file} is not readable JSON: it is empty ({len(text)} bytes: a full disk, or a session "
                           "killed while writing it); rerun the session, or pass another run")
    try:
        data = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise CompareError(f"{file} is not readable JSON ({clip(_one_line(exc), 160)}); rerun the session to "
                           "rewrite it, or pass another run") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CompareError(f"{file} is not a harness results file (no \"format\": \"{FORMAT}\")")
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise CompareError(f"{file} has results schema version {version!r}; this harness reads up to "
                           f"{SCHEMA_VERSION}: upgrade onnx-slm-harness to compare it")
    problem = schema_problem(data)
    if problem:
        shown = version if type(version) is int and 1 <= version <= SCHEMA_VERSION else SCHEMA_VERSION
        raise CompareError(f"{file}: {problem} (results schema {shown}, fixtures/schemas/{SCHEMA_FILE}): pass a "
                           "results.json as a harness session wrote it, or rerun that session")
    return Run(file, data)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@functools.cache
def _validator() -> Any:
    """The results schema as a reader checks it (``READ_REQUIRED``; numbers finite), compiled once."""
    import jsonschema  # here: the plugin's entry point stays light until a run is read

    schema = json.loads((data_dir() / "schemas" / SCHEMA_FILE).read_text(encoding="utf-8"))
    for where, names in READ_REQUIRED.items():
        functools.reduce(lambda node, step: node[step], where, schema)["required"] = names
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine("number", lambda _checker, value: _finite(value))
    return jsonschema.validators.extend(base, type_checker=checker)(schema)


def _finite(value: object) -> bool:
    """A JSON number the comparison can compute with: not a bool, NaN, infinite, or an integer beyond a float."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= sys.float_info.max
    return isinstance(value, float) and math.isfinite(value)


def schema_problem(data: object) -> str:
    """The first place where ``data`` breaks the results schema as a reader checks it, as ``FIELD PROBLEM``
    (e.g. ``tests[3].metrics.ttft_s is "fast", not a finite number``); "" when it follows it."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is None:
        return ""
    where: list[str | int] = list(error.absolute_path)
    value, expected = error.instance, error.validator_value
    if error.validator == "required":
        missing = next((name for name in expected if name not in value), "?")
        return f"{_field([*where, missing])} is missing"
    if error.validator in ("oneOf", "anyOf"):  # each choice a type ({"type": "null"} or an object): name them
        expected = [kind for choice in error.context if choice.validator == "type" and not choice.relative_path
                    for kind in _listed(choice.validator_value)]
    if error.validator == "type" or (error.validator in ("oneOf", "anyOf") and expected):
        return f"{_field(where)} is {_shown(value)}, not {' or '.join(_KINDS.get(k, k) for k in _listed(expected))}"
    if error.validator in ("enum", "const"):
        allowed = [json.dumps(v) for v in (expected if error.validator == "enum" else [expected])]
        return f"{_field(where)} is {_shown(value)}, not {_one_of(allowed)}"
    if error.validator == "not":
        return f"{_field(where)} is {_shown(value)}, which this schema version does not allow"
    if error.validator == "minimum":
        return f"{_field(where)} is {_shown(value)}, below its minimum {expected}"
    return f"{_field(where)}: {clip(' '.join(error.message.split()), 120)}"


def _listed(kinds: object) -> list[str]:
    return [kinds] if isinstance(kinds, str) else [str(kind) for kind in kinds] if isinstance(kinds, list) else []


def _one_of(choices: Sequence[str]) -> str:
    return " or ".join(choices) if len(choices) < 3 else f"one of {', '.join(choices)}"


_KINDS = {"number": "a finite number", "integer": "an integer", "string": "a string", "object": "an object",
          "array": "a list", "boolean": "true or false", "null": "null"}


def _field(path: Sequence[str | int]) -> str:
    """A field's path as messages name it: ``tests[3].metrics.ttft_s``, ``(top level)``."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        elif step.isidentifier():
            text += f".{step}" if text else step
        else:
            text += f"[{json.dumps(clip(step, 40))}]"
    return text or "(top level)"


def _shown(value: object) -> str:
    """A JSON value, short: a string or number as written (cut), a list or object by its kind."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("-Infinity" if value < 0 else "Infinity")
    if isinstance(value, int) and not _finite(value):
        return f"about 10^{int(value.bit_length() * math.log10(2))}"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(clip(value, 40))
    if isinstance(value, list):
        return f"a list ({len(value)} item{'' if len(value) == 1 else 's'})"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def model_of_run(path: Path) -> Path | None:
    """The model a run tested, when ``path`` is a run (its folder or its results.json; None when it is not), which
    must still be where that run had it built (``--harness-ab=RUN``)."""
    results = path / RESULTS_FILE if path.is_dir() else path
    if results.name != RESULTS_FILE or not results.is_file():
        return None
    run = load_run(results)
    built = run.data.get("provenance", {}).get("built_model")
    if not built or not Path(built).is_dir():
        raise CompareError(f"{path}: the model run {run.name} tested is no longer at {built} (a cleared cache?); "
                           "pass that model itself: --harness-ab=ITS_FOLDER_OR_SOURCE")
    return Path(built)


def find_runs(folder: Path) -> tuple[list[Run], list[str]]:
    """Every readable run directly under ``folder`` (oldest first), and one line per unreadable one (a folder with
    a results.json that is empty, corrupt, not of the schema, or itself a folder)."""
    runs: list[Run] = []
    problems: list[str] = []
    try:
        children = sorted(folder.iterdir())
    except OSError as exc:
        raise CompareError(f"{folder} cannot be listed ({exc.strerror or exc}); check the path") from None
    for child in children:
        try:
            holds_run = (child / RESULTS_FILE).exists()
        except OSError:  # not a folder one can look into: no run
            holds_run = False
        if holds_run:
            try:
                runs.append(load_run(child))
            except CompareError as exc:
                problems.append(str(exc))
    runs.sort(key=lambda run: (run.started, run.name))
    return runs, problems


def is_folder_of_runs(path: Path) -> bool:
    """A folder that is not itself a run (holds no results.json, not even a broken one)."""
    try:
        return path.is_dir() and path.name != RESULTS_FILE and not (path / RESULTS_FILE).exists()
    except OSError:
        return False  # load_run says why it cannot be read
