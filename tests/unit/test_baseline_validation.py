"""A baseline (or run) that does not follow the results schema is one line that names the file, the field and the
fix, exit 2, never a traceback: ``harness compare`` and ``--harness-baseline`` both read runs with ``load_run``.

Each row of ``BAD`` edits a complete results.json as a session writes it (``results``) or writes raw bytes; the
good rows show what must still be read (a version 1 file, a file with only what a reader needs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from harness import cli
from harness.locations import data_dir
from harness.report import runs
from harness.report.compare import pick_baseline
from harness.report.runs import FORMAT, CompareError, load_run
from tests.plugin.test_plugin import env, run

__all__ = ["env"]  # the fixture, imported for pytest

SCHEMA = json.loads((data_dir() / "schemas" / "results.schema.json").read_text(encoding="utf-8"))
KEY = {"model_sha256": "ab" * 32, "precision": "int4", "accuracy_level": "as built", "ep": "cpu",
       "machine": "AMD EPYC, x86-avx2, 2 cores"}
BENCH = "test_benchmarks.py::test_generation_latency[prompt={}]"
Edit = Callable[[dict[str, Any]], object]  # edits a results document; returns bytes to write instead, or None


def check(test_id: str, decode: list[float], ttft: float = 0.05) -> dict[str, Any]:
    return {"id": test_id, "nodeid": f"suites/{test_id}", "outcome": "passed", "duration_s": 1.5, "message": None,
            "details": None, "findings": [],
            "metrics": {"decode_tokens_per_s": sorted(decode)[len(decode) // 2], "ttft_s": ttft,
                        "other_cpu_percent": 2.0},
            "series": {"decode_tokens_per_s_rounds": decode, "ttft_s_rounds": [ttft] * len(decode)},
            "properties": {"prompt": "p"}}


def results(name: str, started: str, version: int = 2) -> dict[str, Any]:
    """A complete results.json of four checks (the writer's schema accepts it whole)."""
    decode = [100.0, 101.0, 99.5, 100.5, 100.2]
    tests = [check(BENCH.format(n), decode) for n in (16, 32, 64, 128)]
    return {
        "format": FORMAT, "schema_version": version,
        "run": {"id": name, "started": started, "finished": started, "duration_s": 12.5, "exit_status": 0,
                "args": ["suites"], "profile": "smoke", "precision": "int4", "seed": None, "xdist_workers": 0,
                "report_dir": f"/reports/{name}", "junit_xml": f"/reports/{name}/junit.xml"},
        "key": dict(KEY),
        "provenance": {"model": "/models/m", "source_kind": "hf", "source_sha256": KEY["model_sha256"],
                       "precision": "int4", "builder": "model-builder", "ep": "cpu", "profile": "smoke",
                       "versions": {"onnxruntime-genai": "0.9.0"}, "machine": {"cpu": "AMD EPYC"},
                       "built_model": None},
        "gates": {"regression_timing_max": {"value": 0.1, "origin": "default", "bound": "max", "unit": ""}},
        "totals": {"passed": 4, "failed": 0, "error": 0, "skipped": 0, "xfailed": 0, "xpassed": 0},
        "tests": tests,
        "baseline": None,
    }


def v1_results(name: str, started: str) -> dict[str, Any]:
    """A version 1 file: its comparison has no verdict, inconclusive count nor broken checks, and says unchanged."""
    data = results(name, started, version=1)
    data["baseline"] = {"path": "/reports/older", "baseline": "older", "current": name, "compared": True,
                        "reasons": [], "regressions": 0, "uncompared": [],
                        "deltas": [{"test": BENCH.format(32), "metric": "decode_tokens_per_s", "kind": "timing",
                                    "baseline": 100.0, "current": 100.2, "change": 0.002,
                                    "change_ci": [-0.01, 0.012], "threshold": 0.1, "verdict": "unchanged",
                                    "note": "within", "rounds": [5, 5]}]}
    return data


def at(data: dict[str, Any], path: str) -> tuple[Any, str | int]:
    """The container of ``path`` (``tests.3.metrics.ttft_s``) and the last step."""
    *steps, last = [int(step) if step.isdigit() else step for step in path.split(".")]
    node: Any = data
    for step in steps:
        node = node[step]
    return node, last


def put(path: str, value: object) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        node, last = at(data, path)
        node[last] = value
    return edit


def drop(path: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        node, last = at(data, path)
        del node[last]
    return edit


def raw(text: bytes | Callable[[bytes], bytes]) -> Edit:
    """Bytes instead of the document (``text`` maps the document's own bytes when a function)."""
    def edit(data: dict[str, Any]) -> bytes:
        return text(json.dumps(data).encode()) if callable(text) else text
    return edit


def v1_comparison(data: dict[str, Any]) -> None:
    data["baseline"] = v1_results("x", "y")["baseline"]  # a version 1 comparison in a version 2 file


TTFT = '"ttft_s": 0.05'
BAD: list[Any] = [
    pytest.param(put("key", ["int4", "cpu"]), "key is a list (2 items), not an object", id="key-a-list"),
    pytest.param(put("key.machine", 2), "key.machine is 2, not a string", id="key-value-a-number"),
    pytest.param(put("run", "yesterday"), 'run is "yesterday", not an object', id="run-a-string"),
    pytest.param(put("run.id", 7), "run.id is 7, not a string", id="run-id-a-number"),
    pytest.param(drop("run.started"), "run.started is missing", id="run-without-started"),
    pytest.param(put("run.exit_status", "0"), 'run.exit_status is "0", not an integer', id="exit-status-a-string"),
    pytest.param(put("tests", {"a": 1}), "tests is an object, not a list", id="tests-an-object"),
    pytest.param(put("tests.2", "test_x.py::t"), 'tests[2] is "test_x.py::t", not an object', id="test-a-string"),
    pytest.param(drop("tests.3.id"), "tests[3].id is missing", id="test-without-id"),
    pytest.param(put("tests.3.id", None), "tests[3].id is null, not a string", id="test-id-null"),
    pytest.param(put("tests.3.metrics", [1.0]), "tests[3].metrics is a list (1 item), not an object",
                 id="metrics-a-list"),
    pytest.param(put("tests.3.metrics.ttft_s", "fast"), 'tests[3].metrics.ttft_s is "fast", not a finite number',
                 id="metric-a-string"),
    pytest.param(put("tests.3.metrics.ttft_s", True), "tests[3].metrics.ttft_s is true, not a finite number",
                 id="metric-a-bool"),
    pytest.param(raw(lambda b: b.replace(TTFT.encode(), b'"ttft_s": NaN', 1)),
                 "tests[0].metrics.ttft_s is NaN, not a finite number", id="metric-nan"),
    pytest.param(raw(lambda b: b.replace(TTFT.encode(), b'"ttft_s": -Infinity', 1)),
                 "tests[0].metrics.ttft_s is -Infinity, not a finite number", id="metric-minus-infinity"),
    pytest.param(raw(lambda b: b.replace(TTFT.encode(), b'"ttft_s": 1e999', 1)),
                 "tests[0].metrics.ttft_s is Infinity, not a finite number", id="metric-huge-float"),
    pytest.param(put("tests.3.metrics.ttft_s", 10 ** 400),
                 "tests[3].metrics.ttft_s is about 10^400, not a finite number", id="metric-huge-int"),
    pytest.param(put("tests.1.series.decode_tokens_per_s_rounds", "100,101"),
                 'tests[1].series.decode_tokens_per_s_rounds is "100,101", not a list', id="samples-a-string"),
    pytest.param(put("tests.1.series.decode_tokens_per_s_rounds", [100.0, "fast", 99.0]),
                 'tests[1].series.decode_tokens_per_s_rounds[1] is "fast", not a finite number',
                 id="sample-a-string"),
    pytest.param(put("tests.0.outcome", "ok"), 'tests[0].outcome is "ok", not one of "passed", "failed", "error"',
                 id="outcome-unknown"),
    pytest.param(put("tests.0.outcome", 1), 'tests[0].outcome is 1, not one of "passed"', id="outcome-a-number"),
    pytest.param(put("tests.0.message", ["a"]), "tests[0].message is a list (1 item), not a string or null",
                 id="message-a-list"),
    pytest.param(put("totals.passed", "4"), 'totals.passed is "4", not an integer', id="total-a-string"),
    pytest.param(put("totals.failed", -1), "totals.failed is -1, below its minimum 0", id="total-negative"),
    pytest.param(put("provenance.built_model", 5), "provenance.built_model is 5, not a string or null",
                 id="built-model-a-number"),
    pytest.param(put("schema_version", "2"), 'schema_version is "2", not 1 or 2', id="version-a-string"),
    pytest.param(put("schema_version", 0), "schema_version is 0, not 1 or 2", id="version-0"),
    pytest.param(put("schema_version", True), "schema_version is true, not 1 or 2", id="version-a-bool"),
    pytest.param(drop("schema_version"), "schema_version is missing", id="version-missing"),
    pytest.param(drop("tests"), "tests is missing", id="tests-missing"),
    pytest.param(put("baseline", "older"), 'baseline is "older", not null or an object', id="comparison-a-string"),
    pytest.param(put("baseline", {"path": 3}), "baseline.path is 3, not a string", id="comparison-path-a-number"),
    pytest.param(v1_comparison, 'baseline.deltas[0].verdict is "unchanged", which this schema version does not allow',
                 id="v1-comparison-in-a-v2-file"),
    pytest.param(raw(b""), "is not readable JSON: it is empty (0 bytes: a full disk", id="empty-file"),
    pytest.param(raw(b"\n  \n"), "is not readable JSON: it is empty (4 bytes", id="blank-file"),
    pytest.param(raw(lambda b: b[: len(b) // 2]), "is not readable JSON (", id="cut-in-half"),
    pytest.param(raw(lambda b: b"\xff\xfe" + b), "is not readable JSON ('utf-8' codec can't decode",
                 id="not-utf-8"),
    pytest.param(raw(lambda b: b.replace(TTFT.encode(), b'"ttft_s": ' + b"9" * 5000, 1)),
                 "is not readable JSON (Exceeds the limit (4300 digits)", id="too-many-digits"),
    pytest.param(raw(b"[" * 200_000), "is not readable JSON (maximum recursion depth", id="nested-too-deep"),
    pytest.param(raw(b"[1, 2]"), f'is not a harness results file (no "format": "{FORMAT}")', id="a-list"),
    pytest.param(put("schema_version", 9), "has results schema version 9; this harness reads up to 2: upgrade",
                 id="newer-version"),
]


def write(folder: Path, data: dict[str, Any], edit: Edit | None = None) -> Path:
    """The run folder ``folder`` with its results.json (edited); returns the file."""
    folder.mkdir(parents=True)
    replaced = edit(data) if edit is not None else None
    file = folder / "results.json"
    file.write_bytes(replaced if isinstance(replaced, bytes) else json.dumps(data).encode())
    return file


def harness(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``harness ARGV`` in this process: exit code, stdout, stderr."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, *fragments: str) -> str:
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("harness: ") and all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


def test_the_rows_edit_documents_the_writers_schema_accepts() -> None:
    """The bad rows break one field each of a document that is good as a session writes it."""
    jsonschema.validate(results("base", "2026-11-20T10:00:00+00:00"), SCHEMA)
    jsonschema.validate(v1_results("base", "2026-11-20T10:00:00+00:00"), SCHEMA)


@pytest.mark.parametrize(("edit", "fragment"), BAD)
def test_a_bad_baseline_is_one_line_naming_the_file_and_field(tmp_path: Path, edit: Edit, fragment: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "base", results("base", "2026-11-20T10:00:00+00:00"), edit)
    current = write(tmp_path / "current", results("current", "2026-11-24T10:00:00+00:00"))
    with pytest.raises(CompareError) as caught:  # what --harness-baseline turns into a usage error at start
        load_run(bad.parent)
    assert "\n" not in str(caught.value) and fragment in str(caught.value)
    code, out, err = harness(["compare", str(bad.parent), str(current)], capsys)
    assert code == cli.EXIT_USAGE and out == ""
    line = assert_one_line(err, str(bad), fragment)
    assert len(line) < 400
    # the same file as the run to compare
    code, _, err = harness(["compare", str(current), str(bad)], capsys)
    assert code == cli.EXIT_USAGE
    assert_one_line(err, fragment)


IN_A_FOLDER = ("key-a-list", "run-a-string", "test-without-id", "metric-nan", "empty-file", "not-utf-8")


@pytest.mark.parametrize(("edit", "fragment"), [row for row in BAD if row.id in IN_A_FOLDER])
def test_a_folder_of_only_bad_runs_is_one_line(tmp_path: Path, edit: Edit, fragment: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "reports" / "base", results("base", "2026-11-20T10:00:00+00:00"), edit)
    current = write(tmp_path / "current", results("current", "2026-11-24T10:00:00+00:00"))
    code, out, err = harness(["compare", str(tmp_path / "reports"), str(current)], capsys)
    assert code == cli.EXIT_USAGE and out == ""
    assert_one_line(err, f"the baseline folder {tmp_path / 'reports'} holds no readable run; it holds a run that "
                         f"cannot be read: {bad}", fragment)


def test_a_folder_of_runs_skips_a_broken_one_with_a_note_and_uses_the_newest_readable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 0-byte results.json (a disk that filled up) no longer breaks every later comparison with the folder."""
    reports = tmp_path / "reports"
    write(reports / "a-old", results("a-old", "2026-11-20T10:00:00+00:00"))
    write(reports / "b-good", results("b-good", "2026-11-21T10:00:00+00:00"))
    empty = write(reports / "c-empty", results("c-empty", "2026-11-22T10:00:00+00:00"), raw(b""))
    typed = write(reports / "d-typed", results("d-typed", "2026-11-23T10:00:00+00:00"), put("run.started", 3))
    current = write(reports / "e-current", results("e-current", "2026-11-24T10:00:00+00:00"))
    skipped: list[str] = []
    picked, why = pick_baseline(reports, KEY, before="2026-11-24T10:00:00+00:00", exclude=current.parent,
                                skipped=skipped)
    assert picked is not None and picked.name == "b-good" and why == ""
    assert len(skipped) == 2 and str(empty) in skipped[0] and str(typed) in skipped[1]
    code, out, err = harness(["compare", str(reports), str(current)], capsys)
    assert code == cli.EXIT_OK and "against b-good" in out
    assert err.splitlines() == [f"harness: skipped {line}" for line in skipped]
    assert "Traceback" not in err


def test_a_folder_of_runs_with_one_broken_run_and_one_good_has_exactly_one_note(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    write(reports / "a-good", results("a-good", "2026-11-20T10:00:00+00:00"))
    empty = write(reports / "b-empty", results("b-empty", "2026-11-21T10:00:00+00:00"), raw(b""))
    current = write(tmp_path / "current", results("current", "2026-11-24T10:00:00+00:00"))
    code, out, err = harness(["compare", str(reports), str(current)], capsys)
    assert code == cli.EXIT_OK and "against a-good" in out
    assert_one_line(err, f"harness: skipped {empty} is not readable JSON: it is empty (0 bytes")


@pytest.mark.parametrize(
    "make",
    [pytest.param(lambda tmp: (tmp / "base" / "results.json").mkdir(parents=True), id="results-json-a-folder"),
     pytest.param(lambda tmp: (tmp / "base" / "results.json" / "results.json").mkdir(parents=True),
                  id="results-json-a-folder-holding-a-folder")],
)
def test_a_folder_named_results_json_is_one_line(tmp_path: Path, make: Callable[[Path], object],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    make(tmp_path)
    current = write(tmp_path / "current", results("current", "2026-11-24T10:00:00+00:00"))
    for baseline in (tmp_path / "base", tmp_path / "base" / "results.json"):
        code, _, err = harness(["compare", str(baseline), str(current)], capsys)
        assert code == cli.EXIT_USAGE
        assert_one_line(err, "is a folder, not a file")


def test_a_path_too_long_for_the_file_system_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    current = write(tmp_path / "current", results("current", "2026-11-24T10:00:00+00:00"))
    too_long = tmp_path / ("x" * 5000)
    for argv in (["compare", str(too_long), str(current)], ["compare", str(current), str(too_long)],
                 ["history", str(too_long)]):
        code, _, err = harness(argv, capsys)
        assert code == cli.EXIT_USAGE
        assert_one_line(err)


GOOD: list[Any] = [
    pytest.param(lambda: results("base", "2026-11-20T10:00:00+00:00"), id="version-2"),
    pytest.param(lambda: v1_results("base", "2026-11-20T10:00:00+00:00"), id="version-1-with-unchanged"),
    pytest.param(lambda: {"format": FORMAT, "schema_version": 2, "run": {"id": "base",
                                                                        "started": "2026-11-20T10:00:00+00:00"},
                          "key": dict(KEY), "tests": results("x", "y")["tests"]}, id="only-what-a-reader-needs"),
    pytest.param(lambda: {**results("base", "2026-11-20T10:00:00+00:00"), "added_later": {"any": ["thing"]}},
                 id="a-field-added-within-the-version"),
]


@pytest.mark.parametrize("make", GOOD)
def test_a_good_baseline_is_compared(tmp_path: Path, make: Callable[[], dict[str, Any]],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path / "base", make())
    current = write(tmp_path / "current", results("current", "2026-11-24T10:00:00+00:00"))
    assert load_run(base).name == "base"
    code, out, err = harness(["compare", str(base.parent), str(current)], capsys)
    assert code == cli.EXIT_OK, err
    assert err == "" and out.startswith("harness: no regression: current against base: 8 metrics compared")


def test_the_writers_schema_takes_both_versions_and_keeps_version_2_strict() -> None:
    jsonschema.validate(v1_results("a", "b"), SCHEMA)
    v2 = v1_results("a", "b")
    v2["schema_version"] = 2
    with pytest.raises(jsonschema.ValidationError):  # version 2 says within, and has verdict, inconclusive, broken
        jsonschema.validate(v2, SCHEMA)
    v2["baseline"].update(verdict="within", inconclusive=0, broken=[])
    with pytest.raises(jsonschema.ValidationError, match="'unchanged' should not be valid"):
        jsonschema.validate(v2, SCHEMA)
    v2["baseline"]["deltas"][0]["verdict"] = "within"
    jsonschema.validate(v2, SCHEMA)


def test_a_baseline_round_of_zero_is_left_out_not_a_crash(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A round of 0 in the baseline would make a resampled median 0 (a division by zero in the bootstrap)."""
    base = write(tmp_path / "base", results("base", "2026-11-20T10:00:00+00:00"),
                 put("tests.1.series.decode_tokens_per_s_rounds", [0.0, 0.0, 100.0, 100.0, 100.0]))
    current = write(tmp_path / "current", results("current", "2026-11-24T10:00:00+00:00"))
    code, out, err = harness(["compare", str(base.parent), str(current)], capsys)
    assert code == cli.EXIT_OK and err == ""
    assert (f"not compared: {BENCH.format(32)} decode_tokens_per_s: a baseline round is 0, not a time or rate one "
            "can compare with") in out


def test_a_typed_wrong_baseline_stops_a_pytest_run_at_start(pytester: pytest.Pytester,
                                                             env: dict[str, Path]) -> None:
    """The plugin's path: --harness-baseline with a run of the wrong types is a usage error before any check, one
    line, no traceback (it was an AttributeError at the session's end, and no reports)."""
    bad = write(pytester.path / "old", results("old", "2026-11-20T10:00:00+00:00"), put("run", "yesterday"))
    result = run(pytester, env, f"--harness-baseline={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: harness: --harness-baseline (from the command line): {bad}: run is "
                                 '"yesterday", not an object (results schema 2, *): pass a results.json as a harness '
                                 "session wrote it, or rerun that session"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_validation_is_compiled_once(tmp_path: Path) -> None:
    """Reading many reports compiles the results schema once: one validator serves every run (its speed is measured
    by benchmarks, not asserted here)."""
    data = results("big", "2026-11-20T10:00:00+00:00")
    data["tests"] = [check(f"test_x.py::t[{i}]", [100.0, 101.0, 99.0]) for i in range(2000)]
    file = write(tmp_path / "big", data)
    runs._validator.cache_clear()
    for _ in range(3):
        assert len(load_run(file).tests()) == 2000
    assert runs._validator.cache_info().misses == 1
