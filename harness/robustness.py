"""(placeholder, filled by the issue that owns it)"""

from __future__ import annotations

from harness.gates import Gate

GATES: tuple[Gate, ...] = ()
