"""summary.md's text as a reader meets it: no word and no short quoted literal cut by wrapping or clipping, no
heading repeated in the text under it, no exception class in a heading, no pytest echo of a diff already shown."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from harness.report.digest import FailureGroup, what_it_says
from harness.report.summary import LINE_WIDTH, summary_markdown, wrap
from tests.unit.test_report import check, results

ANSWER = "'The capital of Germany is Berlin, a city on the Spree with a long and turbulent history.'"
FINDING = ("user text CAN switch roles in this runtime: " + "the attack spelled with control tokens " * 30
           + "so strip or refuse NUL in user input")
TRACEBACK = "\n".join([
    "    def test_x():",
    ">       assert actual == expected, message",
    "E       AssertionError: PromptTemplate of --inference-config inference_model.json looks like Phi-3's, the "
    "model's chat template is ChatML: use the entries the chat template renders (below), or drop --inference-config",
    f"E         'user' for content 'What is the capital of France?': answer {ANSWER} and {ANSWER}",
    "E       assert '<|user|>\\nWhat?<|end|>\\n' == '<|im_start|>user\\nWhat?<|im_end|>\\n'",
    "E         ",
    "E         - <|im_start|>user",
    "E         + <|user|>",
    "",
    "suites/test_template.py:58: AssertionError",
])


def summary() -> str:
    failed = check("test_template.py::test_entry[user-plain]", "failed", TRACEBACK.splitlines()[2][8:])
    failed["details"] = TRACEBACK
    finds = check("test_template.py::test_user_text_cannot_switch_roles")
    finds["findings"] = [{"kind": "special-token-injection", "text": FINDING}]
    return summary_markdown(results(failed, finds), Path("/project"))


def test_no_word_and_no_short_quoted_literal_is_cut() -> None:
    text = summary()
    lines = text.splitlines()
    for literal in re.findall(r"(?<!\w)'[^']*'(?!\w)", "\n".join(TRACEBACK.splitlines()[2:4])):  # the message
        if len(literal) <= LINE_WIDTH - 4:
            assert any(literal in line for line in lines), f"{literal} is split across lines"
    for line, after in itertools.pairwise(lines):
        if after.startswith("    ") and not line.startswith("    def"):  # a wrapped line: broken at a space
            assert line.endswith(" "), f"cut mid-word: {line!r} / {after!r}"
    (finding,) = [line for line in lines if line.startswith("- **special-token-injection**")]
    shown = finding.split("(passed): ", 1)[1]
    head, _, tail = shown.partition(" ... ")
    assert FINDING.startswith(head) and FINDING.endswith(tail) and FINDING[len(head)] == " " \
        and FINDING[-len(tail) - 1] == " ", "the finding is clipped between words, its start and its advice kept"
    assert tail.endswith("so strip or refuse NUL in user input")


@pytest.mark.parametrize("numbers", ["[101.2, 99.8, 100.4, 102.9, 98.7, 100.0]", "[-0.5, 1e-05, 3]"])
def test_a_list_of_numbers_that_fits_on_a_line_is_not_cut(numbers: str) -> None:
    """A failure's per-round figures read as one list: wrapped before or after it, never inside it."""
    for lead in range(40, 100, 7):
        line = f"{'x' * lead} timings per round {numbers} ms, and more words after them to wrap"
        assert any(numbers in part for part in wrap(line)), wrap(line)


def test_a_heading_is_not_repeated_under_it_and_names_no_exception_class() -> None:
    text = summary()
    heading = ("**PromptTemplate of --inference-config inference_model.json looks like Phi-3's, the model's chat "
               "template is ChatML: use the entries the chat template renders (below), or drop --inference-config**")
    assert heading in text and "AssertionError: PromptTemplate" not in text
    block = text.split(heading, 1)[1].split("```text", 1)[1].split("```", 1)[0]
    assert not block.strip().startswith("PromptTemplate of"), block


def test_pytests_echo_of_a_compared_value_and_its_diff_are_left_out() -> None:
    test = check("t.py::t", "failed", "AssertionError: x")
    test["details"] = TRACEBACK
    said = what_it_says(test)
    assert "assert '<|user|>" not in said and "- <|im_start|>user" not in said
    assert said.startswith("PromptTemplate of --inference-config") and said.endswith(
        "(suites/test_template.py:58: AssertionError)")
    bare = check("t.py::t", "failed", "assert 1 == 2")
    bare["details"] = "E       assert 1 == 2\n\nt.py:3: AssertionError"
    assert what_it_says(bare) == "assert 1 == 2\n(t.py:3: AssertionError)", "an assert with no message is kept"
    assert FailureGroup("c", [check("t.py::t", "failed", "Failed: case 'a' failed: score 0")]).title == \
        "case 'a' failed: score 0"
