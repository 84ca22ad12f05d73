"""Which prompt lengths the input-length suite measures, for a context and a profile's cap: pure arithmetic that
the suite (``harness.checks.lengths``) and the time budget (``harness.config.budget``) share, below both."""

from __future__ import annotations

LENGTHS = (1, 16, 64, 256, 1024, 2048)  # prompt tokens; plus the context minus CONTEXT_MARGIN
OUTPUT_TOKENS = 32  # every length generates exactly this many (min = max), so decode times compare
CONTEXT_MARGIN = OUTPUT_TOKENS  # the longest prompt leaves room for the whole answer
LENGTH_IDS = (*(str(n) for n in LENGTHS), "context")


def longest_length(context_length: int, cap: int | None) -> int:
    """The longest prompt measured: the context minus the answer's room, capped by the profile."""
    longest = context_length - CONTEXT_MARGIN
    return longest if cap is None else min(cap, longest)


def resolve_length(length_id: str, context_length: int, cap: int | None) -> tuple[int | None, str]:
    """The token count for a parametrized length id, or None and why it is not measured."""
    longest = longest_length(context_length, cap)
    if length_id == "context":
        n = context_length - CONTEXT_MARGIN
        if n in LENGTHS:
            return None, f"context - {CONTEXT_MARGIN} is {n} tokens, measured as such"
        if n > longest:
            return None, f"context - {CONTEXT_MARGIN} = {n} tokens is over this profile's cap of {cap} tokens"
        return n, ""
    n = int(length_id)
    if n > longest:
        why = (f"over the context ({context_length}) minus {CONTEXT_MARGIN} for the answer" if cap is None or n <= cap
               else f"over this profile's cap of {cap} tokens")
        return None, f"{n} tokens is {why}"
    return n, ""


def planned_lengths(context_length: int, cap: int | None) -> list[int]:
    """Every length measured, shortest first."""
    resolved = (resolve_length(length_id, context_length, cap)[0] for length_id in LENGTH_IDS)
    return sorted({n for n in resolved if n is not None})
