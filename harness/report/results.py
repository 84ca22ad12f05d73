"""Collects every check's outcome and metrics into the run's report folder, and compares with a baseline.

``reports/<timestamp>-<model>-<precision>/`` gets, when the session ends:

- ``results.json``: every check's outcome, its numeric properties (``metrics``: numbers, ``series``:
  lists of numbers, ``properties``: anything else recorded with ``record_property``), provenance,
  gates, and the baseline comparison; schema ``fixtures/schemas/results.schema.json`` (versioned);
- ``summary.md``: for a CI job summary or a pull-request comment;
- ``report.html``: self-contained, with plots;
- ``junit.xml``: unless ``--junitxml`` names another file.

Each file is written whole or not at all (``harness.fsutil.write_text_atomic``), and each on its own: one that
cannot be written (a full disk) is one line on the terminal and fails the session, the others are still written.
A session that ends early (interrupted, ``-x``, a build that fails at collection) still writes them, with its exit
status and the checks that finished.

Under xdist, the controller writes them from the reports its workers send; workers write none.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.config.gates import Gates
from harness.errors import PREFIX
from harness.fsutil import write_text_atomic
from harness.properties import SOFT_OUTCOMES, finding_kind, is_answer, soft_verdict
from harness.report.compare import Comparison, Thresholds, compare_runs, key_of, pick_baseline
from harness.report.junit import MESSAGE_LIMIT, junit_xml
from harness.report.run_page import render_run
from harness.report.runs import FORMAT, RESULTS_FILE, SCHEMA_VERSION, CompareError, Run, dump_run
from harness.report.summary import summary_markdown
from harness.runtime.protocol import finite_number
from harness.session import HarnessSession
from harness.terminal import progress_writer

SUMMARY_FILE, HTML_FILE, JUNIT_FILE = "summary.md", "report.html", "junit.xml"
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", *SOFT_OUTCOMES)
DETAILS_LIMIT = 20_000  # characters of a failure's full text kept in results.json
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


# -- one check's record ----------------------------------------------------------------------------
def _short_id(nodeid: str) -> str:
    """The node id without the folders, so runs from different working folders line up."""
    path, sep, rest = nodeid.partition("::")
    return Path(path).name + sep + rest


def _message(report: pytest.TestReport) -> str | None:
    longrepr = report.longrepr
    if longrepr is None:
        return None
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    text = str(crash.message) if crash is not None else str(longrepr).strip()
    return text[:MESSAGE_LIMIT]


def _jsonable(value: Any) -> Any:
    """A JSON-safe copy: non-finite floats and unknown objects become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@dataclass
class CheckRecord:
    nodeid: str
    outcome: str = "passed"
    duration_s: float = 0.0
    message: str | None = None
    details: str = ""  # the full failure text, for JUnit
    properties: dict[str, Any] = field(default_factory=dict)
    # False while only a passed setup is known: a check the session ended during (Ctrl-C) is left out, not "passed"
    has_outcome: bool = False

    def update(self, report: pytest.TestReport) -> None:
        self.has_outcome = self.has_outcome or report.when != "setup" or not report.passed
        self.duration_s += report.duration
        self.properties.update(dict(report.user_properties))
        xfail = hasattr(report, "wasxfail")
        if report.failed:
            self.details += report.longreprtext
        if report.when == "call":
            soft = soft_verdict(report)
            if report.passed and soft is not None:  # --unstable/--inconclusive=warn: its own outcome, never a pass
                self.outcome, explanation = soft
                self.message, self.details = explanation[:MESSAGE_LIMIT], explanation
                return
            if report.passed:
                self.outcome = "xpassed" if xfail else "passed"
            elif report.skipped:
                self.outcome = "xfailed" if xfail else "skipped"
            else:
                self.outcome = "failed"
            self.message = str(report.wasxfail) if xfail and report.skipped else _message(report)
        elif report.failed and self.outcome not in ("failed", "error"):
            self.outcome, self.message = "error", f"{report.when}: {_message(report)}"
        elif report.skipped and report.when == "setup":
            self.outcome = "xfailed" if xfail else "skipped"
            self.message = str(report.wasxfail) if xfail else _message(report)

    def to_json(self) -> dict[str, Any]:
        metrics: dict[str, float] = {}
        series: dict[str, list[float]] = {}
        other: dict[str, Any] = {}
        findings: list[dict[str, str]] = []
        answers: list[Any] = []
        for name, value in self.properties.items():
            if (kind := finding_kind(name)) is not None:
                findings.append({"kind": kind, "text": str(value)})
            elif is_answer(name):
                answers.append(json.loads(str(value)))
            elif finite_number(value):
                metrics[name] = value
            elif isinstance(value, list | tuple) and value and all(finite_number(v) for v in value):
                series[name] = list(value)
            else:
                other[name] = _jsonable(value)
        return {"id": _short_id(self.nodeid), "nodeid": self.nodeid, "outcome": self.outcome,
                "duration_s": round(self.duration_s, 6), "message": self.message,
                "details": self.details[:DETAILS_LIMIT] or None, "findings": findings, "answers": answers,
                "metrics": metrics, "series": series, "properties": other}


# -- the recorder ----------------------------------------------------------------------------------
def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _render_to(path: Path, render: Callable[[], str]) -> None:
    write_text_atomic(path, render())


def _listing(folder: Path) -> list[str]:
    """The run's files for its page to link (folders end in /)."""
    return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if p.name != HTML_FILE)


class RunRecorder:
    """A pytest plugin object registered by ``harness.plugin`` once the harness session is open."""

    def __init__(self, session: HarnessSession, gates: Gates) -> None:
        self.session = session
        self.gates = gates  # the run's resolved gates
        self.config: pytest.Config | None = None
        self.active = False  # False on xdist workers and with --collect-only
        self.checks: dict[str, CheckRecord] = {}
        self.started, self.started_clock = _now(), time.perf_counter()
        self.baseline: Run | None = None
        self.baseline_note = ""  # why no baseline run was picked
        self.skipped_baselines: list[str] = []  # runs of a baseline folder passed over: unreadable, or ended early
        self.comparison: Comparison | None = None
        self.written: Path | None = None  # the run's folder, once a report is written in it
        self.files: list[str] = []  # the reports written
        self.problems: list[str] = []  # one line each: a report that could not be written

    @property
    def key(self) -> dict[str, str]:
        return key_of(self.session.provenance(), self.session.precision_label)

    # Called when plugin.py registers this object, inside its own pytest_configure.
    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config
        if _is_worker(config) or config.option.collectonly:
            return
        self.active = True
        self.session.claim_run_dir()
        baseline = self.session.settings.baseline
        if baseline is not None:
            try:
                self.baseline, self.baseline_note = pick_baseline(baseline, self.key, before=self.started,
                                                                  exclude=self.session.run_dir,
                                                                  skipped=self.skipped_baselines)
            except CompareError as exc:
                origin = self.session.settings.origins["baseline"]
                raise pytest.UsageError(f"{PREFIX}--harness-baseline (from {origin}): {exc}") from None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.active:
            self.checks.setdefault(report.nodeid, CheckRecord(report.nodeid)).update(report)

    def results(self, exit_status: int) -> dict[str, Any]:
        """This run's results.json document."""
        assert self.config is not None
        provenance = self.session.provenance()
        checks = [check.to_json() for check in self.checks.values() if check.has_outcome]
        counts = Counter(check["outcome"] for check in checks)
        xmlpath = getattr(self.config.option, "xmlpath", None) or self.session.run_dir / JUNIT_FILE
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "run": {
                "id": self.session.run_dir.name,
                "started": self.started,
                "finished": _now(),
                "duration_s": round(time.perf_counter() - self.started_clock, 3),
                "exit_status": int(exit_status),
                "args": [str(arg) for arg in self.config.invocation_params.args],
                "profile": self.session.settings.profile,
                "precision": self.session.precision_label,
                "seed": self.config.getoption("hypothesis_seed", None),
                "shard": None if (shard := self.session.settings.shard) is None else str(shard),
                "xdist_workers": workers if isinstance(workers := getattr(self.config.option, "numprocesses", 0),
                                                       int) else 0,
                "report_dir": str(self.session.run_dir.resolve()),
                "junit_xml": str(Path(xmlpath).resolve()),
            },
            "key": self.key,
            "provenance": _jsonable(provenance),
            "gates": self.gates.table(),
            "totals": {outcome: counts.get(outcome, 0) for outcome in OUTCOMES},
            "tests": checks,
            "baseline": None,
        }

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the reports, results.json first (later runs compare with it), each on its own: one that cannot be
        written (a full disk) or rendered (a harness bug) is one line on the terminal, never a traceback nor the
        others' loss, and the session fails (``_fail``).

        pytest calls this however a started session ends (interrupted, -x, a UsageError at collection, an internal
        error), with its exit status; checks that had not finished are left out (``CheckRecord.has_outcome``)."""
        if not self.active:
            return
        assert self.config is not None
        results = self.results(exitstatus)
        self._attempt("add the fields of pytest_harness_results", lambda: self._add_extra(results))
        folder = self.session.claim_run_dir()
        if not self._attempt(f"compare with the baseline {self.session.settings.baseline}",
                             lambda: self._compare(session, results, folder)):
            self.comparison, results["baseline"] = None, None
            results["run"]["exit_status"] = int(self._fail(session))
        rootpath, details = self.config.rootpath, {c.nodeid: c.details for c in self.checks.values()}
        reports: list[tuple[str, Callable[[], str]]] = [
            (RESULTS_FILE, lambda: dump_run(results)),
            (SUMMARY_FILE, lambda: summary_markdown(results, rootpath)),
            *([] if getattr(self.config.option, "xmlpath", None) else [(JUNIT_FILE,
                                                                        lambda: junit_xml(results, details))]),
            (HTML_FILE, lambda: render_run(results, _listing(folder))),  # last: it links the files written
        ]
        for name, render in reports:
            if self._attempt(f"write {folder / name}", functools.partial(_render_to, folder / name, render)):
                self.files.append(name)
        self.written = folder if self.files else None
        if self.problems:
            write = progress_writer(self.config)  # now: the terminal summary is skipped for some exit statuses
            for problem in self.problems:
                write(problem)
            self._fail(session)

    def _compare(self, session: pytest.Session, results: dict[str, Any], folder: Path) -> None:
        """The comparison with the baseline, into ``results``; a regression fails the run."""
        if self.baseline is not None:
            self.comparison = compare_runs(self.baseline, Run(folder / RESULTS_FILE, results),
                                           Thresholds.from_gates(self.gates))
        elif self.baseline_note:
            self.comparison = Comparison(str(self.session.settings.baseline), results["run"]["id"],
                                         [self.baseline_note])
        if self.comparison is not None:
            path = self.baseline.path if self.baseline is not None else self.session.settings.baseline
            results["baseline"] = {"path": str(path), **self.comparison.to_dict()}
            if self._fails_the_run(self.comparison) and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
                results["run"]["exit_status"] = int(pytest.ExitCode.TESTS_FAILED)

    def _add_extra(self, results: dict[str, Any]) -> None:
        """What plugins add through ``pytest_harness_results``, checked to be JSON before it joins the document."""
        assert self.config is not None
        extra: dict[str, Any] = {}
        self.config.hook.pytest_harness_results(config=self.config, results=results, extra=extra)
        if extra:
            json.dumps(extra, allow_nan=False)
            results["extra"] = extra

    def _attempt(self, doing: str, action: Callable[[], object]) -> bool:
        """Whether ``action`` succeeded; its failure is kept in ``problems`` as one line."""
        try:
            action()
        except OSError as exc:  # the disk, not the harness: say what to do
            reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else str(exc)
            fix = "free space and rerun" if exc.errno in _DISK_FULL else "check the reports folder and rerun"
            self.problems.append(f"could not {doing}: {reason}; {fix}")
        except Exception as exc:  # a bug: what and where, for the bug report
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            self.problems.append(f"internal error, could not {doing}: {type(exc).__name__}: {exc} "
                                 f"({Path(frame.filename).name}:{frame.lineno}); please report it")
        else:
            return True
        return False

    @staticmethod
    def _fail(session: pytest.Session) -> int:
        """Fail a session whose reports are not all there; its exit status.

        INTERNAL_ERROR (3), as pytest exits when a plugin fails outside the tests. Not TESTS_FAILED: 1 says the checks
        ran and the reports tell which failed, and a CI step that reads them on 1 would find them missing. A status
        that already says the session did not end normally (interrupted, usage error) is kept."""
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return int(session.exitstatus)

    def _fails_the_run(self, comparison: Comparison) -> bool:
        """A regression fails the run; so does an inconclusive one (nothing compared too) with --inconclusive=fail."""
        return comparison.verdict == "regressed" or (comparison.verdict in ("inconclusive", "not compared")
                                                     and self.session.settings.inconclusive == "fail")

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.written is None:
            return
        write = terminalreporter.write_line
        files = sorted(self.files, key=[RESULTS_FILE, SUMMARY_FILE, HTML_FILE, JUNIT_FILE].index)
        write(f"harness: report {self.written} ({', '.join(files)})")
        for note in self.skipped_baselines:
            write(f"harness: baseline: skipped {note}")
        comparison = self.comparison
        if comparison is None:
            return
        regressed, uncertain = comparison.verdict == "regressed", comparison.verdict in ("inconclusive",
                                                                                         "not compared")
        write(f"harness: {comparison.headline()}", red=regressed, yellow=uncertain)
        for line in comparison.broken:
            write(f"harness:   BROKEN       {line}", red=True)
        for delta in comparison.regressions:
            write(f"harness:   {delta.line()}", red=True)
        for delta in comparison.inconclusive:
            write(f"harness:   {delta.line()}", yellow=True)
        for reason in comparison.uncompared[:3]:
            write(f"harness:   not compared: {reason}")
        # The last line (pytest's counts) says it too: "12 passed, 2 regressed, 1 inconclusive in 40s".
        if regressed:
            terminalreporter.stats.setdefault("regressed", []).extend(
                [*comparison.broken, *comparison.regressions])
        if comparison.inconclusive or comparison.verdict == "not compared":
            terminalreporter.stats.setdefault("inconclusive", []).extend(comparison.inconclusive or [comparison])


