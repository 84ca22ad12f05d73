"""``--harness-budget``: size a profile's sample counts to a time budget from the model's measured speed.

The prediction is the profile's measured duration on the default model (``benchmarks/suite_times.py``, README
"Where a smoke run's time goes"), its model-bound share scaled by how much slower this model decodes. Every
sample count then shrinks by the same factor, never below the floor its statistic needs, and the run says
what each cut costs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from typing import Any

from harness.profiles import Profile

# Measured on the default model (int4, cpu) on the CI machine kind: seconds for the profile, at this decode speed.
REFERENCE_SECONDS = {"smoke": 122.0, "full": 471.0}
REFERENCE_DECODE_TPS = 170.0
MODEL_BOUND = 0.9  # share of a run that scales with the model's speed (generation, worker requests, loads)
# The smallest count each statistic still works with.
FLOORS = {"template_examples": 5, "memory_generations": 20, "load_cycles": 3, "foundry_cycles": 2,
          "max_prompt_tokens": 256, "fuzz_examples": 5, "benchmark_rounds": 3}
UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(raw: str) -> float:
    """Seconds from ``90``, ``90s``, ``2.5m``, ``3min`` or ``1h``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*", raw.lower())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError("is not a duration above zero, e.g. 150s, 2.5m or 1h")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def _cost(name: str, before: int, after: int) -> str:
    """What shrinking a count from ``before`` to ``after`` costs the statistic it feeds."""
    if name in ("memory_generations", "load_cycles", "foundry_cycles"):
        return f"the leak slope's 95% interval widens {(before / after) ** 1.5:.1f}x"
    if name == "benchmark_rounds":
        return f"a median's noise grows {math.sqrt(before / after):.1f}x"
    if name in ("fuzz_examples", "template_examples"):
        return (f"a defect in 5% of inputs is found with probability {1 - 0.95 ** after:.0%} "
                f"instead of {1 - 0.95 ** before:.0%}")
    return f"prompts above {after} tokens go untested"


@dataclass(frozen=True)
class Scaling:
    profile: Profile  # the sample counts to run
    budget_s: float
    decode_tps: float  # this model's, measured at start
    predicted_s: float  # the unscaled profile's, at that speed
    factor: float  # 1: the profile fits the budget
    changes: tuple[str, ...]  # one line per count cut, with what it costs

    def lines(self) -> list[str]:
        head = (f"budget {self.budget_s:g} s: the model decodes {self.decode_tps:.0f} tokens/s "
                f"({self.decode_tps / REFERENCE_DECODE_TPS:.2f}x the default model's); the {self.profile.name} profile "
                f"would take about {self.predicted_s:.0f} s")
        if self.factor >= 1:
            return [f"{head}: it fits, nothing scaled"]
        return [f"{head}: sample counts scaled by {self.factor:.2f}", *(f"  {change}" for change in self.changes)]


def fit(profile: Profile, budget_s: float, decode_tps: float) -> Scaling:
    """``profile`` with its sample counts scaled to finish near ``budget_s`` at ``decode_tps``."""
    reference = REFERENCE_SECONDS.get(profile.name, REFERENCE_SECONDS["full"])
    slowdown = REFERENCE_DECODE_TPS / max(decode_tps, 1e-6)
    predicted = reference * ((1 - MODEL_BOUND) + MODEL_BOUND * slowdown)
    factor = min(1.0, budget_s / predicted)
    if factor >= 1:
        return Scaling(profile, budget_s, decode_tps, predicted, 1.0, ())
    scaled: dict[str, Any] = {}
    changes: list[str] = []
    for field in fields(Profile):
        value = getattr(profile, field.name)
        floor = FLOORS.get(field.name)
        if floor is None or not isinstance(value, int) or value <= floor:
            continue
        cut = max(floor, round(value * factor))
        if cut < value:
            scaled[field.name] = cut
            changes.append(f"{field.name} {value} -> {cut}: {_cost(field.name, value, cut)}")
    return Scaling(replace(profile, **scaled), budget_s, decode_tps, predicted, factor, tuple(changes))
