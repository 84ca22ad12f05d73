"""The harness's own exception types.

Every message is one line that names the problem and, where there is one, the fix. Messages carry no
prefix: where one is printed (``one_line``), at session start, as a check's failure or by the CLI, it
is printed as ``harness: <message>``, instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

PREFIX = "harness: "


def one_line(exc: BaseException) -> str:
    """How the harness prints an error of its own."""
    return f"{PREFIX}{exc}"


class HarnessError(Exception):
    """Base class: a problem the user can act on, described in one line."""


class ConfigError(HarnessError):
    """A setting has a bad value (the message names the setting and where the value came from)."""


class SourceError(HarnessError):
    """The model source is missing, of an unknown kind, or corrupt."""


class BuildError(HarnessError):
    """Conversion or quantization failed or produced no usable model."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


class RuntimeFailure(HarnessError):
    """onnxruntime-genai refused a request; ``original`` keeps the runtime's own message."""

    def __init__(self, message: str, original: str = "") -> None:
        super().__init__(message)
        self.original = original


class ContextOverflow(RuntimeFailure):
    """The prompt plus the requested output does not fit the model's context."""


class EmptyInput(RuntimeFailure):
    """The prompt encodes to no tokens."""


class InvalidSearchOption(RuntimeFailure):
    """A generation setting has a value the runtime cannot use."""
