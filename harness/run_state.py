"""What the plugin keeps for one pytest run: one typed object (``RunState``) behind one stash key.

The hooks (``harness.plugin``) fill it at start; the fixtures (``harness.fixtures``) read it. Cheap to import: the
plugin's entry point loads it in every pytest run of the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from harness.config.profiles import Profile
from harness.config.settings import Settings

if TYPE_CHECKING:
    from harness.checks.cases import CaseSet
    from harness.checks.reference import EvalSet, EvalText
    from harness.config.gates import Gates
    from harness.runtime.factory import RuntimeFactory
    from harness.session import HarnessSession

NOT_ACTIVE = "harness is not active in this run: pass --model PATH or run the shipped suites"


@dataclass
class RunState:
    """The run's resolved settings and profiles (always), and, once the run engages the harness, its session and
    what was read and checked at start."""

    settings: Settings
    profiles: Mapping[str, Profile]
    session: HarnessSession | None = None  # the model under test, its build and report folder (engaged runs only)
    gates: Gates | None = None
    cases: CaseSet | None = None  # --cases, or the shipped sets, validated at start
    eval_texts: tuple[EvalText, ...] = ()  # --eval-texts, read at start
    runtime_factory: tuple[RuntimeFactory, str] | None = None  # the plugged-in runtime and its reference
    first_seen: dict[str, str] = field(default_factory=dict)  # each HarnessError line -> the check that reported it

    @property
    def profile(self) -> Profile:
        return self.profiles[self.settings.profile]

    def case_set(self) -> CaseSet:
        """The validated cases of this run (none when the harness is not active)."""
        from harness.checks.cases import CaseSet

        return self.cases if self.cases is not None else CaseSet(())

    def eval_set(self) -> EvalSet:
        """The parity suite's eval set: the shipped prompts and texts, the user's texts (--eval-texts) in place of
        the shipped ones."""
        from harness.checks.reference import load_eval_set

        return load_eval_set(texts=self.eval_texts)


STATE_KEY = pytest.StashKey[RunState]()


def run_state(config: pytest.Config) -> RunState | None:
    """The run's state; None before ``pytest_configure`` resolved the settings (or under --help)."""
    return config.stash.get(STATE_KEY, None)


def active_session(config: pytest.Config) -> HarnessSession | None:
    """The harness session when the run engages the harness, else None."""
    state = run_state(config)
    return None if state is None else state.session


def engaged_state(config: pytest.Config) -> RunState:
    """The state of a run that engages the harness; a check that needs one skips in a run that does not."""
    state = run_state(config)
    if state is None or state.session is None:
        pytest.skip(NOT_ACTIVE)
    return state
