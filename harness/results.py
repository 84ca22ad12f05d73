"""(placeholder, filled by issue 7) Collects every check's outcome and metrics into the run's reports."""

from __future__ import annotations

from harness.session import HarnessSession


class RunRecorder:
    """A pytest plugin object registered by ``harness.plugin`` once the harness session is open."""

    def __init__(self, session: HarnessSession) -> None:
        self.session = session
