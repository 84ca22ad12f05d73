"""The names of the user properties the harness records on a check and reads back from its report: an outcome
pytest has no word for (unstable, inconclusive), and findings. One place, so the recorder, the reports and JUnit
agree; cheap to import (the plugin reads them in every run)."""

from __future__ import annotations

from typing import ClassVar

OUTCOME_PROPERTY = "harness_outcome"  # names an outcome pytest does not have
UNSTABLE = "unstable"  # its value for an unstable verdict (compute paths disagree: stability.Outcome.UNSTABLE)
INCONCLUSIVE = "inconclusive"  # a timing (harness.checks.ab) or, off Linux, a memory peak the measurement cannot decide
SOFT_OUTCOMES = (UNSTABLE, INCONCLUSIVE)  # each is also the name of the setting that says warn or fail
FINDING_PREFIX = "harness_finding:"  # harness_finding:<kind>#<n> = the finding's text
ANSWER_PREFIX = "harness_answer#"  # harness_answer#<n> = {"prompt", "answer", "stop_reason", "output_tokens"}
ANSWER_TEXT_LIMIT = 4000  # characters of a recorded prompt or answer (a 32k-token prompt would swell the reports)


class SoftVerdict(Exception):
    """Raised by a check whose verdict is neither a pass nor a failure; the plugin reports it as its own outcome
    (``outcome``), or as a failure with ``--<outcome>=fail``."""

    outcome: ClassVar[str]


def soft_section(outcome: str) -> str:
    """The report section holding a soft verdict's explanation."""
    return f"harness: {outcome} verdict"


def soft_verdict(report: object) -> tuple[str, str] | None:
    """(outcome, explanation) of a report's soft verdict, or None when it had none."""
    properties = getattr(report, "user_properties", ())
    outcome = next((value for name, value in properties if name == OUTCOME_PROPERTY and value in SOFT_OUTCOMES), None)
    if outcome is None:
        return None
    sections = getattr(report, "sections", ())
    return outcome, next((text for title, text in sections if title == soft_section(outcome)), "")


def finding_property(kind: str, index: int) -> str:
    """The property name of a check's ``index``-th finding of ``kind`` (two of one kind stay two)."""
    return f"{FINDING_PREFIX}{kind}#{index}"


def finding_kind(name: object) -> str | None:
    """The kind of finding a property name records, or None when it records none."""
    text = str(name)
    return text.removeprefix(FINDING_PREFIX).rsplit("#", 1)[0] if text.startswith(FINDING_PREFIX) else None


def answer_property(index: int) -> str:
    """The property name of a check's ``index``-th recorded answer."""
    return f"{ANSWER_PREFIX}{index}"


def is_answer(name: object) -> bool:
    return str(name).startswith(ANSWER_PREFIX)
