"""Sample counts per profile: ``smoke`` keeps this repo's CI fast, ``full`` is for gating a release."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    template_examples: int  # Hypothesis examples per PromptTemplate entry


PROFILES = {
    "smoke": Profile("smoke", template_examples=25),
    "full": Profile("full", template_examples=200),
}
