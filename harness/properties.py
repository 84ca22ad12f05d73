"""The names of the user properties the harness records on a check and reads back from its report: an outcome
pytest has no word for (unstable), and findings. One place, so the recorder, the reports and JUnit agree;
cheap to import (the plugin reads them in every run)."""

from __future__ import annotations

OUTCOME_PROPERTY = "harness_outcome"  # names an outcome pytest does not have
UNSTABLE = "unstable"  # its value for an unstable verdict (stability.Outcome.UNSTABLE)
FINDING_PREFIX = "harness_finding:"  # harness_finding:<kind>#<n> = the finding's text


def finding_property(kind: str, index: int) -> str:
    """The property name of a check's ``index``-th finding of ``kind`` (two of one kind stay two)."""
    return f"{FINDING_PREFIX}{kind}#{index}"


def finding_kind(name: object) -> str | None:
    """The kind of finding a property name records, or None when it records none."""
    text = str(name)
    return text.removeprefix(FINDING_PREFIX).rsplit("#", 1)[0] if text.startswith(FINDING_PREFIX) else None
