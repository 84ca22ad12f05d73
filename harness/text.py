"""Texts and sequences as messages show them: cut to a length, and where two of them part.

One place for these, so that every message marks a cut the same way (``...``).
"""

from __future__ import annotations

from collections.abc import Sequence

CUT = "..."


def clip(text: str, limit: int, *, mark_counts: bool = False) -> str:
    """The start of ``text`` followed by ``...`` when it is over ``limit`` characters; ``mark_counts``: the
    ``...`` counts in the limit (the result is then never longer than ``limit``)."""
    if len(text) <= limit:
        return text
    return text[:limit - len(CUT) if mark_counts else limit] + CUT


def clip_middle(text: str, limit: int, mark: str = CUT, after: str = "") -> str:
    """``text`` when it has at most ``limit`` characters, else its two ends around ``mark`` (then ``after``)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}{mark}{text[-limit // 2:]}{after}"


def clip_words(text: str, limit: int) -> str:
    """``text`` when it has at most ``limit`` characters, else its start and its end, each cut at a space, around
    `` ... ``: no word is cut, and the end, where a message gives its fix, stays."""
    if len(text) <= limit:
        return text
    room = limit - len(CUT) - 2  # the mark and its spaces count in the limit
    head, tail = text[:room * 2 // 3], text[-(room // 3):]
    head = head[:head.rfind(" ")] if " " in head else head
    tail = tail[tail.find(" ") + 1:] if " " in tail else tail
    return f"{head.rstrip()} {CUT} {tail.lstrip()}"


def clip_items(items: Sequence[str], most: int, separator: str = "; ") -> str:
    """The first ``most`` items joined by ``separator``, and ``...`` when there were more."""
    return separator.join(items[:most]) + (f"{separator}{CUT}" if len(items) > most else "")


def shorten(text: str, limit: int = 160) -> str:
    """``repr`` of a text, cut in the middle when long (surrogates and controls stay visible)."""
    shown = repr(text)
    return clip_middle(shown, limit, after=f" ({len(text)} chars)")


def first_difference(a: Sequence[object], b: Sequence[object]) -> int:
    """Index of the first item (character, token) where ``a`` and ``b`` differ (the shorter length if one
    is a prefix)."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def plural(count: int, noun: str) -> str:
    """``1 check``, ``2 checks``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
