"""The machine yardstick: a fixed onnxruntime workload, cheap beside a benchmark round."""

from __future__ import annotations

import statistics

from harness.checks.yardstick import Yardstick


def test_the_yardstick_times_a_fixed_workload_in_milliseconds() -> None:
    yardstick = Yardstick()
    timings = [yardstick.seconds() for _ in range(5)]
    assert all(t > 0 for t in timings)
    assert statistics.median(timings) < 0.1  # about 10 ms here; a benchmark round of the default model is 0.6 s
    other = Yardstick()
    other.seconds()
    assert other._feed["x"].tobytes() == yardstick._feed["x"].tobytes()  # seeded: every run builds the same one
