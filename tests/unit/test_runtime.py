"""Shared pieces of ``harness.runtime``: the finiteness test of search options and the run report, and
``ModelInfo`` as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.runtime.genai import read_model_info
from harness.runtime.protocol import ModelInfo, finite_number
from harness.testing.fakes import write_genai_folder


@pytest.mark.parametrize(("value", "finite"), [
    (1, True), (0.5, True), (-2.0, True), (True, False), (math.nan, False), (math.inf, False), (-math.inf, False),
    ("1", False), (None, False),
])
def test_finite_number(value: object, finite: bool) -> None:
    assert finite_number(value) is finite


def test_model_info_round_trips_through_json(tmp_path: Path) -> None:
    """The worker's ready line carries the ModelInfo this way (``WorkerInfo.model``)."""
    info = read_model_info(write_genai_folder(tmp_path / "model"))
    assert ModelInfo.from_json(json.loads(json.dumps(info.to_json()))) == info
