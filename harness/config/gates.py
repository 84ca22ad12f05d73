"""Pass/fail limits that gate a user's model, declared next to the check that uses them.

Each checking module declares ``GATES``, contributed through the ``pytest_harness_gates`` hook (the
built-in ones by ``harness.builtins``); this module resolves their values from ``--gate NAME=VALUE``
(repeatable) > ``[tool.harness.gates]`` > ini ``harness_gates`` lines > the measured default written in
the declaration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from harness.errors import ConfigError


@dataclass(frozen=True)
class Gate:
    name: str
    default: float
    bound: Literal["max", "min"]  # "max": the measured value must not exceed it; "min": not fall below
    unit: str
    help: str  # what it limits and where the default comes from
    # The values the gate may take, in interval notation: the range of what it limits, so that a gate that can
    # never pass (a share above 1) or never fail (a share below 0) is refused at start.
    domain: str = "[0, inf)"

    def __post_init__(self) -> None:
        if not in_domain(self.default, self.domain):
            raise ValueError(f"gate {self.name}: its default {self.default} is outside {self.domain}")


def in_domain(value: float, domain: str) -> bool:
    """Whether ``value`` lies in an interval written as ``[0, 1]``, ``(0, inf)``, ``[0, 100]``..."""
    low_bracket, low, high, high_bracket = domain[0], *domain[1:-1].split(","), domain[-1]
    low_value, high_value = float(low), float(high)
    above = value > low_value or (low_bracket == "[" and value == low_value)
    below = value < high_value or (high_bracket == "]" and value == high_value)
    return above and below


def declare(contributions: Iterable[Iterable[Gate]]) -> dict[str, Gate]:
    """The gates the plugins contribute, by name; a name declared twice is ambiguous."""
    gates: dict[str, Gate] = {}
    for contribution in contributions:
        for gate in contribution:
            if gate.name in gates and gates[gate.name] != gate:
                raise ConfigError(f"gate {gate.name} is declared twice (pytest_harness_gates); "
                                  "rename one of them")
            gates[gate.name] = gate
    return gates


@dataclass(frozen=True)
class Gates:
    """The resolved limits of this run, with where each came from."""

    values: Mapping[str, float]
    origins: Mapping[str, str]
    declared: Mapping[str, Gate]

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def check(self, name: str, measured: float) -> bool:
        """True if ``measured`` is within gate ``name``."""
        gate, limit = self.declared[name], self.values[name]
        return measured <= limit if gate.bound == "max" else measured >= limit

    def describe(self, name: str) -> str:
        gate = self.declared[name]
        relation = "at most" if gate.bound == "max" else "at least"
        return f"{name} {relation} {self.values[name]:g}{gate.unit} ({self.origins[name]})"

    def table(self) -> dict[str, dict[str, Any]]:
        """Each gate's value, origin, bound and unit, as the reports record them."""
        return {name: {"value": self.values[name], "origin": self.origins[name], "bound": gate.bound,
                       "unit": gate.unit} for name, gate in self.declared.items()}


def _parse_pair(text: str, origin: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(f"gate {text!r} (from {origin}) must be NAME=VALUE, e.g. ppl_ratio_max=1.5")
    return name.strip(), value.strip()


def resolve_gates(
    declared: Mapping[str, Gate], cli: Iterable[str] = (), *, table: Mapping[str, object] | None = None,
    table_origin: str = "", ini_lines: Iterable[str] = (), ini_origin: str = "",
) -> Gates:
    """Each declared gate's value from the first source that sets it: ``cli`` (``NAME=VALUE`` items) > ``table``
    ([tool.harness.gates], from ``table_origin``) > ``ini_lines`` (from ``ini_origin``) > its default."""
    values = {name: gate.default for name, gate in declared.items()}
    origins = dict.fromkeys(declared, "default")
    layers: list[tuple[str, list[tuple[str, object]]]] = [
        (ini_origin, [_parse_pair(line, ini_origin) for line in ini_lines if line.strip()]),
        (table_origin, list((table or {}).items())),
        ("the command line", [_parse_pair(item, "the command line") for item in cli]),
    ]
    for origin, pairs in layers:  # lowest precedence first
        for name, raw in pairs:
            if name not in declared:
                raise ConfigError(f"unknown gate {name!r} (from {origin}); known gates: "
                                  f"{', '.join(sorted(declared))}")
            try:
                value = float(str(raw)) if not isinstance(raw, bool) else math.nan
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise ConfigError(f"gate {name} = {raw!r} (from {origin}) is not a finite number")
            if not in_domain(value, declared[name].domain):
                raise ConfigError(f"gate {name} = {raw!r} (from {origin}) is outside {declared[name].domain}, the "
                                  f"values it can take; its default is {declared[name].default:g}")
            values[name], origins[name] = value, origin
    return Gates(values, origins, declared)
