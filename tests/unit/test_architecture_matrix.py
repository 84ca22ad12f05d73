"""The architecture matrix's own logic, without a model: it covers every architecture the installed builder dispatches
on, and its judge fails a row for each kind of problem (a build that breaks, a crash, a skipped or missing check, a
Foundry chat wrong beyond what random weights explain), turns a known defect into its xfail only when that defect alone
fails the row, and a known defect that stops failing into a failure."""

from __future__ import annotations

from typing import Any

import pytest

from harness.testing.tiny_architectures import ARCHITECTURES, NOT_MADE, TINY, builder_architectures
from tests.e2e.architecture_rows import (
    FOUNDRY_CHAT,
    SUITES,
    Known,
    RowRun,
    UpstreamDefect,
    foundry_chat_problems,
    judge,
    row_problems,
    summary,
)
from tests.e2e.test_architectures import KNOWN, ROWS

LENGTH = "Foundry finished by 'length' after 96 tokens, not by its end-of-turn token ('stop')"
BUILD_ERROR = ("ERROR: harness: model builder int4 failed (exit 1): last log line: KeyError: 'position_ids'; full "
               "log: /r/build.log")


def check(test_id: str, outcome: str = "passed", message: str = "", details: str = "") -> dict[str, Any]:
    return {"id": test_id, "outcome": outcome, "message": message, "details": details or None}


def chat(message: str, direct: str = "abc", foundry: str = "abc") -> dict[str, Any]:
    details = (f"{message}\n  onnxruntime-genai (length, 96 tokens): {direct!r}\n"
               f"  Foundry Local (length, 96 tokens): {foundry!r}\n  weakest decisions ...")
    return check(f"{FOUNDRY_CHAT}capital]", "failed", f"Failed: {details}", details)


def healthy(*extra: dict[str, Any]) -> RowRun:
    """A run of a sound architecture: every suite passed, Foundry's chats ran to their limit."""
    checks = [check(f"{suite}::test_something") for suite in SUITES] + [chat(LENGTH), *extra]
    return RowRun(1, "8 failed, 105 passed", {"tests": checks, "provenance": {"build_seconds": 6.5}})


def test_the_matrix_covers_every_architecture_the_installed_builder_dispatches_on() -> None:
    rows = {arch.builder_name for arch in ARCHITECTURES.values()}
    assert builder_architectures() == rows | set(NOT_MADE), "a builder architecture is neither a row nor explained"
    assert not rows & set(NOT_MADE)
    assert {architecture for _, architecture, _ in ROWS} == set(ARCHITECTURES)
    assert set(KNOWN) <= {row for row, _, _ in ROWS}


def test_a_tiny_config_is_the_common_widths_with_the_architectures_fields_over_them() -> None:
    fields = ARCHITECTURES["phi3-longrope"].fields(49152)
    assert fields["model_type"] == "phi3" and fields["vocab_size"] == 49152
    assert fields["hidden_size"] == TINY["hidden_size"] and fields["max_position_embeddings"] == 2048
    assert fields["rope_scaling"]["type"] == "longrope"


def test_a_sound_row_passes() -> None:
    assert row_problems(healthy()) == []
    judge(healthy(), None)
    assert summary(healthy()) == {"build": "6.5 s", "test_template.py": "1/1", "test_generation.py": "1/1",
                                  "test_malformed.py": "1/1", "test_foundry_local.py": "2/2"}
    failed_build = {"tests": [], "provenance": {"build_seconds": None}}  # the results.json of a failed build
    assert summary(RowRun(4, f"header\n{BUILD_ERROR}", failed_build)) == {"build": BUILD_ERROR}
    assert summary(RowRun(4, "header", None)) == {"build": "exit 4, no results.json"}


@pytest.mark.parametrize(("run", "problem"), [
    (RowRun(4, f"header\n{BUILD_ERROR}\n", None), f"the harness exited 4: {BUILD_ERROR}"),
    (RowRun(3, "INTERNALERROR> boom", None), "the harness exited 3: INTERNALERROR> boom"),
    (RowRun(1, "", None), "the harness wrote no results.json"),
    (healthy(check("test_template.py::test_x", "failed", "PromptTemplate 'user' must hold {Content}")),
     "test_template.py::test_x: failed: PromptTemplate 'user' must hold {Content}"),
    (healthy(check("test_malformed.py::test_y", "skipped", "no raw path")), "test_malformed.py::test_y: skipped"),
    (healthy(check("test_generation.py::test_z", "error", "setup: model failed to load")),
     "test_generation.py::test_z: error: setup: model failed to load"),
    (RowRun(0, "", {"tests": [check(f"{suite}::t") for suite in SUITES[:-1]]}),
     "no check of test_foundry_local.py ran"),
], ids=["build-breaks", "internal-error", "no-results", "failed-check", "skipped-check", "error", "missing-suite"])
def test_each_kind_of_problem_fails_the_row(run: RowRun, problem: str) -> None:
    assert any(found.startswith(problem) for found in row_problems(run)), row_problems(run)
    with pytest.raises(AssertionError, match="problem"):
        judge(run, None)


@pytest.mark.parametrize(("message", "direct", "foundry", "left"), [
    (LENGTH, "abc", "abc", []),
    (f"{LENGTH}; Foundry's answer contains control tokens ['<|im_start|>']", "abc", "abc", []),
    (f"{LENGTH}; the answers differ from character 3", "abc\ufffd", "abcdef", []),  # the engine's decode stopped
    (f"{LENGTH}; the answers differ from character 3", "abc\ufffd", "abc", []),  # a lead byte at the very end
    (f"{LENGTH}; the answers differ from character 2", "abc", "abd", ["the answers differ from character 2"]),
    (f"{LENGTH}; the answers differ from character 3", "abc\ufffdx", "abcx",
     ["the answers differ from character 3"]),  # the engine went on after the replacement: not its decode stopping
    (f"{LENGTH}; the prompts differ: 40 tokens in Foundry, 38 in onnxruntime-genai (another chat template?)", "a", "a",
     ["the prompts differ: 40 tokens in Foundry, 38 in onnxruntime-genai (another chat template?)"]),
    (f"Foundry's answer is empty; {LENGTH}", "\n\n", "\n\n", []),  # tied embeddings echo the prompt's last newline
    (f"Foundry's answer is empty; {LENGTH}", "\n\nabc", "\n\n", ["Foundry's answer is empty"]),
])
def test_foundry_chats_are_judged_on_what_random_weights_cannot_explain(message: str, direct: str, foundry: str,
                                                                        left: list[str]) -> None:
    assert foundry_chat_problems(chat(message, direct, foundry)) == left


def test_a_foundry_chat_that_could_not_run_fails_the_row() -> None:
    could_not = check(f"{FOUNDRY_CHAT}planet]", "failed", "Foundry Local could not load the model: boom")
    assert row_problems(healthy(could_not)) == [f"{FOUNDRY_CHAT}planet]: Foundry Local could not load the model: boom"]


def test_a_known_defect_is_its_xfail_only_when_it_alone_fails_the_row() -> None:
    known = Known("KeyError: 'position_ids'", "NoPE layers", "microsoft/onnxruntime-genai")
    with pytest.raises(UpstreamDefect, match="NoPE layers: the harness exited 4: ERROR: harness: model builder"):
        judge(RowRun(4, BUILD_ERROR, None), known)
    with pytest.raises(AssertionError):  # another failure than the known one
        judge(RowRun(4, "ERROR: harness: model builder int4 failed (exit 1): last log line: KeyError: 'type'", None),
              known)
    gqa = Known("GroupQueryAttention", "window", "microsoft/onnxruntime-genai")
    same = healthy(check("test_generation.py::a", "failed", "generating: GroupQueryAttention node failed"),
                   check(f"{FOUNDRY_CHAT}x]", "failed", "harness: the same error as suites/test_generation.py::a"))
    with pytest.raises(UpstreamDefect):  # the harness's pointers back to a first error carry no signature
        judge(same, gqa)
    other = healthy(check("test_generation.py::a", "failed", "generating: GroupQueryAttention node failed"),
                    check("test_template.py::b", "failed", "a template problem"))
    with pytest.raises(AssertionError):
        judge(other, gqa)


def test_a_known_defect_that_stops_failing_fails_the_run(pytester: pytest.Pytester) -> None:
    """strict xfail: the row that passes is XPASS(strict), a failure, and a row failing otherwise fails outright."""
    pytester.makepyfile("""
        import pytest
        from tests.e2e.architecture_rows import Known, RowRun, judge
        from tests.unit.test_architecture_matrix import healthy

        KNOWN = Known("KeyError: 'type'", "LongRoPE key", "microsoft/onnxruntime-genai")

        @KNOWN.mark()
        def test_fixed_upstream():
            judge(healthy(), KNOWN)

        @KNOWN.mark()
        def test_fails_otherwise():
            judge(RowRun(4, "ERROR: harness: model builder int4 failed: KeyError: 'rope_type'", None), KNOWN)

        @KNOWN.mark()
        def test_still_broken():
            judge(RowRun(4, "ERROR: harness: model builder int4 failed: KeyError: 'type'", None), KNOWN)
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:harness")
    result.assert_outcomes(failed=2, xfailed=1)
    result.stdout.fnmatch_lines(["*_ test_fixed_upstream _*", "[[]XPASS(strict)[]] LongRoPE key (owner: "
                                 "microsoft/onnxruntime-genai)", "*_ test_fails_otherwise _*"])
