"""The harness's own exception types.

Every message is one line that names the problem and, where there is one, the fix: the plugin
prints it as-is at session start instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


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
