"""The one finiteness test that search options and the run report share (``harness.runtime.finite_number``)."""

from __future__ import annotations

import math

import pytest

from harness.runtime import finite_number


@pytest.mark.parametrize(("value", "finite"), [
    (1, True), (0.5, True), (-2.0, True), (True, False), (math.nan, False), (math.inf, False), (-math.inf, False),
    ("1", False), (None, False),
])
def test_finite_number(value: object, finite: bool) -> None:
    assert finite_number(value) is finite
