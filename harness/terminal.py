"""Lines the harness writes to pytest's terminal as things happen."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from harness.build.buildlog import Progress


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
