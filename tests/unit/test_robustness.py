"""What counts as a correct outcome, the known-issue signatures, the catalogue and the time limits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.builtins import builtin_gates
from harness.config.gates import declare, resolve_gates
from harness.robustness.catalog import (
    INPUT_CASES,
    KNOWN_ISSUES,
    SETTING_CASES,
    Expect,
    ask,
    chat,
    fill,
    past_context,
    raw,
    text,
)
from harness.robustness.prober import Prober, answer_problems, judge
from harness.runtime.genai import read_model_info
from harness.runtime.protocol import ModelInfo
from harness.testing.fakes import write_genai_folder
from harness.worker.client import Answer, Outcome, WorkerClient, WorkerInfo

DECLARED = declare([builtin_gates()])

INFO = WorkerInfo(pid=1, model=ModelInfo(Path("model"), "llama", context_length=256, eos_token_ids=(2,),
                                         bos_token_id=None, vocab_size=1000))
HELLO = ask(chat("hello"))
GOOD = Answer("Paris.", (80, 97, 2), 12, "user hello", "eos")


def answered(answer: Answer = GOOD) -> Outcome:
    return Outcome("answered", 0.1, answer=answer)


def rejected(*classes: str) -> Outcome:
    return Outcome("rejected", 0.1, error=classes[0], classes=(*classes, "Exception"), message="harness: no\nmore")


CRASHED = Outcome("crashed", 0.1, message="SIGSEGV", signal="SIGSEGV", exit_code=-11)
ABORTED = Outcome("crashed", 0.1, message="SIGABRT", signal="SIGABRT", exit_code=-6)
HUNG = Outcome("hung", 30.0, message="no answer within 30 s (worker killed)")
CLEAN = rejected("InvalidSearchOption", "RuntimeFailure", "HarnessError")


@pytest.mark.parametrize(("expect", "outcome", "status"), [
    ("answer", answered(), "ok"), ("answer", CLEAN, "fail"), ("answer", CRASHED, "fail"), ("answer", HUNG, "fail"),
    ("reject", CLEAN, "ok"), ("reject", answered(), "fail"), ("reject", rejected("KeyError", "LookupError"), "fail"),
    ("reject", CRASHED, "fail"), ("reject", HUNG, "fail"),
    ("either", answered(), "ok"), ("either", CLEAN, "ok"), ("either", rejected("TypeError"), "fail"),
    ("either", CRASHED, "fail"), ("either", HUNG, "fail"),
])
def test_each_expectation_accepts_only_its_outcomes(expect: Expect, outcome: Outcome, status: str) -> None:
    assert judge(expect, outcome, HELLO, INFO).status == status


def test_failure_lines_name_what_happened_and_what_was_expected() -> None:
    assert judge("answer", CRASHED, HELLO, INFO).line == \
        "crashed the model worker (SIGSEGV); expected a well-formed answer"
    assert judge("reject", HUNG, HELLO, INFO, errors=("ContextOverflow",)).line == \
        "hung: no answer within 30 s (worker killed); expected a clean rejection (ContextOverflow)"
    assert judge("reject", rejected("KeyError"), HELLO, INFO).line == \
        "rejected with KeyError: harness: no, not a HarnessError; expected a clean rejection"
    assert judge("reject", CLEAN, HELLO, INFO, errors=("ContextOverflow",)).status == "fail"
    assert judge("either", rejected("WorkerError", "HarnessError"), HELLO, INFO).line.startswith(
        "the worker could not run the request (WorkerError: harness: no)")


@pytest.mark.parametrize(("answer", "problem"), [
    (Answer("", (), 3, "after", "length"), "no output token"),
    (Answer("abcdefghi", tuple(range(10, 19)), 3, "after", "length"), "9 output tokens where at most 8 were asked for"),
    (Answer("a", (10, 2, 11), 3, "after", "length"), "eos token inside the answer at positions [1]"),
    (Answer("a", (10, 11), 3, "after", "eos"), "stop reason 'eos' but the last token [11] is not an eos id [2]"),
    (Answer("a", (10, 2), 3, "after", "length"), "stop reason 'length' but the last token [2] is an eos id [2]"),
    (Answer("a", (10, 2), 3, "before", "eos"), "the prompt was cut short: 'after' never reached the model, "
                                                "which read 'before'"),
])
def test_a_malformed_answer_is_caught(answer: Answer, problem: str) -> None:
    assert answer_problems(answer, (2,), 8, must_reach="after") == [problem]
    assert judge("either", answered(answer), HELLO, INFO, must_reach="after").status == "fail"


def test_a_well_formed_answer_has_no_problem() -> None:
    assert answer_problems(GOOD, (2,), 8, must_reach="hello") == []
    assert answer_problems(Answer("a", (10,), 3, "x", "length"), (2,), 1) == []


@pytest.mark.parametrize(("issue", "expect", "request_", "outcome", "near_miss"), [
    ("nul-ends-text", "either", ask(chat("a\x00b")), answered(), ask(chat("ab"))),
    ("invalid-sampling-accepted", "reject", raw(chat("hi"), do_sample=True, temperature=math.nan), answered(),
     raw(chat("hi"), do_sample=True, temperature=0.5)),
    ("invalid-sampling-accepted", "reject", raw(chat("hi"), do_sample=True, repetition_penalty=0.0), answered(),
     raw(chat("hi"), do_sample=True, repetition_penalty=1e-20)),
    ("invalid-sampling-accepted", "reject", raw(chat("hi"), do_sample=True, temperature=2.0**-149), answered(),
     raw(chat("hi"), do_sample=False, temperature=2.0**-149)),
])
def test_a_known_issue_is_recognized_only_from_its_signature(
    issue: str, expect: Expect, request_: dict[str, object], outcome: Outcome, near_miss: dict[str, object]
) -> None:
    known = KNOWN_ISSUES.values()
    reach = "b" if issue == "nul-ends-text" else None
    verdict = judge(expect, outcome, request_, INFO, must_reach=reach, known=known)
    assert (verdict.status, verdict.known_issue) == ("known", issue)
    assert verdict.line.startswith(f"known issue {issue}: ")
    missed = judge(expect, outcome, near_miss, INFO, must_reach=reach, known=known)
    assert missed.status == "fail"


def test_a_crash_is_never_a_known_issue() -> None:
    """0.18.0 refuses or answers what 0.14.1 aborted on: a crash now is a new defect."""
    for request_ in (raw(chat("hi"), do_sample=True, temperature=math.nan), raw(fill(tokens=64)),
                     raw(chat("hi"), do_sample=True, top_k=1001)):
        assert judge("reject", ABORTED, request_, INFO, known=KNOWN_ISSUES.values()).status == "fail"
        assert judge("reject", CRASHED, request_, INFO, known=KNOWN_ISSUES.values()).status == "fail"


def test_the_temperature_signature_follows_float32() -> None:
    def status(temperature: float) -> str:
        return judge("reject", answered(), raw(chat("hi"), do_sample=True, temperature=temperature), INFO,
                     known=KNOWN_ISSUES.values()).status

    assert status(2.9e-39) == "known"  # 1 / float32(t) overflows
    assert status(3.0e-39) == "fail"  # a temperature the runtime can use: answering it is no issue, refusing is
    assert status(5e-324) == "fail"  # rounds to 0.0 in float32, which the runtime handles


def test_the_catalogue_is_consistent(tmp_path: Path) -> None:
    model = read_model_info(write_genai_folder(tmp_path))
    cases = INPUT_CASES + SETTING_CASES
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for case in cases:
        request = case.resolve(model)
        assert json.loads(json.dumps(request)) is not None
        assert case.known_issue is None or case.known_issue in KNOWN_ISSUES, case.id
        assert case.why, case.id
    assert {case.known_issue for case in cases} - {None} == set(KNOWN_ISSUES), "a known issue without its case"


def test_time_limit_grows_with_the_prompt(tmp_path: Path) -> None:
    folder = write_genai_folder(tmp_path, context_length=1000)
    gates = resolve_gates(DECLARED, ["robustness_timeout_s=10", "robustness_timeout_ms_per_token=5"])
    prober = Prober(WorkerClient([]), gates, read_model_info(folder))
    assert prober.timeout_for(ask(fill(tokens=200))) == pytest.approx(10 + 200 * 0.005)
    assert prober.timeout_for(ask(fill(context_offset=-1))) == pytest.approx(10 + 999 * 0.005)
    assert prober.timeout_for(ask(text("x" * 100_000))) == pytest.approx(10 + 1000 * 0.005)  # capped at the context
    assert prober.timeout_for(ask(text("ab"))) == pytest.approx(10 + (len('{"text": "ab"}') + 64) * 0.005)
    assert prober.timeout_for(ask(past_context("x"))) == pytest.approx(10 + 1000 * 0.005)
    # A prompt that must be refused gets no prefill allowance: refusing it costs a token count, whatever the context.
    for request in (ask(past_context("x")), ask(fill(context_offset=1)), ask(text("x" * 100_000))):
        assert prober.timeout_for(request, "reject") == pytest.approx(10)
