"""The shared message helpers (``harness.text``): how a cut is marked, and where two sequences part."""

from __future__ import annotations

from harness.text import clip, clip_items, clip_middle, clip_words, first_difference, shorten


def test_clip_keeps_short_text_and_marks_a_cut() -> None:
    assert clip("abcdef", 6) == "abcdef"
    assert clip("abcdefg", 6) == "abcdef..."
    assert clip("abcdefg", 6, mark_counts=True) == "abc..."
    assert clip("abcdef", 6, mark_counts=True) == "abcdef"


def test_clip_middle_keeps_both_ends() -> None:
    assert clip_middle("abcdef", 6) == "abcdef"
    assert clip_middle("abcdefghij", 4) == "ab...ij"
    assert clip_middle("abcdefghij", 5, mark=" ... ", after="!") == "ab ... hij!"  # -5 // 2 == -3


def test_shorten_is_a_repr_cut_in_the_middle_with_the_length() -> None:
    assert shorten("ab\x00") == repr("ab\x00")
    assert shorten("x" * 100, 10) == "'xxxx...xxxx' (100 chars)"


def test_clip_items_marks_the_rest() -> None:
    assert clip_items(["a", "b"], 2) == "a; b"
    assert clip_items(["a", "b", "c"], 2) == "a; b; ..."
    assert clip_items(["a", "b", "c"], 1, ", ") == "a, ..."


def test_first_difference() -> None:
    assert first_difference((1, 2, 3), (1, 5, 3)) == 1
    assert first_difference([1, 2], [1, 2, 3]) == 2
    assert first_difference("same", "same") == 4


def test_clip_words_keeps_the_start_and_the_fix_at_the_end_and_cuts_no_word() -> None:
    text = "NUL ends the user text silently: " + "the runtime reads up to it and drops the rest " * 12 + \
        "strip or refuse NUL in user input"
    shown = clip_words(text, 200)
    assert len(shown) <= 200 and shown.endswith("strip or refuse NUL in user input")
    assert shown.startswith("NUL ends the user text silently:") and " ... " in shown
    words = set(text.split())
    assert all(word in words for word in shown.replace(" ... ", " ").split())  # no word cut
    assert clip_words("short", 200) == "short"
