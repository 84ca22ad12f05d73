"""Lines the harness writes to pytest's terminal: progress as things happen, and the summary at the end."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

import pytest

from harness.properties import INCONCLUSIVE, UNSTABLE, finding_kind, soft_verdict

if TYPE_CHECKING:
    from harness.preparation.buildlog import Progress


def progress_writer(config: pytest.Config) -> Progress:
    """Lines for the terminal, shown as they happen: output capture (on while a fixture sets up) is suspended."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def write(message: str) -> None:
        line = f"harness: {message}"
        if reporter is None:
            print(line, file=sys.stderr, flush=True)
            return
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line(line)

    return write


def reported_findings(report: pytest.TestReport) -> list[tuple[str, str]]:
    """The (kind, text) findings a check reported through ``harness_finding``."""
    return [(kind, str(text)) for name, text in report.user_properties if (kind := finding_kind(name)) is not None]


def write_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List findings (whatever the checks' outcomes) and soft verdicts, like pytest's short summary."""
    reports = [report for reports in terminalreporter.stats.values() for report in reports
               if isinstance(report, pytest.TestReport) and report.when == "call"]
    found = [(report.nodeid, kind, text) for report in reports for kind, text in reported_findings(report)]
    if found:
        terminalreporter.section("harness: findings", sep="=", yellow=True)
        for nodeid, kind, text in found:
            terminalreporter.write_line(f"FINDING {kind} {nodeid}")
            terminalreporter.write_line(f"  {text}")
    for outcome, why in SOFT_EXPLAINED.items():
        soft = [report for report in terminalreporter.stats.get(outcome, ()) if isinstance(report, pytest.TestReport)]
        if not soft:
            continue
        terminalreporter.section(f"harness: {outcome} verdicts", sep="=", yellow=True)
        terminalreporter.write_line(f"{why} (--{outcome}=fail makes them fail)")
        for report in soft:
            lines = (soft_verdict(report) or ("", ""))[1].splitlines()
            terminalreporter.write_line(f"{outcome.upper()} {report.nodeid}")
            for line in lines[:2]:
                terminalreporter.write_line(f"  {line.strip()}")


SOFT_EXPLAINED = {UNSTABLE: "their compute paths disagree: each verdict hangs on a near-tie that another CPU may "
                            "break either way",
                  INCONCLUSIVE: "the measurement cannot decide: a timing's interval straddles its limit, the rounds "
                                "are too few, or (off Linux) a memory peak's bounds straddle its gate"}
