"""Fuzzing: Hypothesis-generated prompts and search settings never crash or hang the model.

Each example runs in the model worker (``harness.worker``): it must get a well-formed answer or a
clean rejection, and leave the model answering a known-good prompt as before. Defects already known
in onnxruntime-genai 0.18.0 (``harness.robustness.catalog.KNOWN_ISSUES``) are counted, not failed. A failure
is shrunk to a minimal input, saved in the run's report folder as a reproducer that replays with
``python -m harness.worker --model MODEL --replay FILE`` (its ``replay`` field holds the command).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness import Prober, Profile, fuzz, prompt_requests, setting_requests

RecordProperty = Callable[[str, object], None]


def _fail(failure: str | None) -> None:
    if failure is not None:
        pytest.fail(failure, pytrace=False)


def test_fuzzed_prompts_are_handled(harness_prober: Prober, harness_profile: Profile, harness_run_dir: Path,
                                    record_property: RecordProperty) -> None:
    """Chat messages (raw text for a base model) of any code points, controls and the template's own control tokens."""
    _fail(fuzz(harness_prober, prompt_requests(harness_prober.model), harness_profile.fuzz_examples, "fuzzed-prompts",
               harness_run_dir, record_property))


def test_fuzzed_search_options_are_handled(harness_prober: Prober, harness_profile: Profile, harness_run_dir: Path,
                                           record_property: RecordProperty) -> None:
    """Settings the harness accepts, at their edges, and anything else: NaN, infinities, negatives, wrong types."""
    _fail(fuzz(harness_prober, setting_requests(harness_prober.model), harness_profile.fuzz_examples,
               "fuzzed-search-options", harness_run_dir, record_property))
