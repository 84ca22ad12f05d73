"""Three outcomes over compute paths, and how a near-tie is explained (no model, no pytest session)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from harness.checks.stability import Outcome, PathJudgement, PathVerdict, divergence_lines, weakest_decisions
from harness.runtime.protocol import Generation

WORDS = {1: " Rome", 2: "<eos>", 3: " Napoli", 4: " Milan", 5: "The", 6: " capital", 7: " is"}


def decode(ids: Sequence[int]) -> str:
    return "".join(WORDS.get(i, "?") for i in ids)


def answer(tokens: Sequence[int], margins: Sequence[float], runner_ups: Sequence[int]) -> Generation:
    return Generation((9, 9), tuple(tokens), decode(tokens), "eos", 0.0, (0.0,) * len(tokens), 0.0,
                      tuple(margins), tuple(runner_ups))


ROME = answer([5, 6, 7, 1, 2], [4.0, 3.0, 2.5, 0.05, 1.5], [6, 7, 1, 3, 4])
NAPOLI = answer([5, 6, 7, 3, 2], [4.1, 2.9, 2.4, 0.07, 1.2], [6, 7, 1, 1, 4])


def judgement(label: str, passed: bool, *answers: Generation) -> PathJudgement:
    return PathJudgement(label, passed, "" if passed else f"the answer on {label} misses Rome", answers)


@pytest.mark.parametrize(("passes", "outcome"), [
    ((True, True), Outcome.PASSED), ((False, False), Outcome.FAILED), ((True, False), Outcome.UNSTABLE),
    ((False, True), Outcome.UNSTABLE), ((True,), Outcome.PASSED), ((False,), Outcome.FAILED),
])
def test_outcome_is_pass_fail_or_unstable(passes: tuple[bool, ...], outcome: Outcome) -> None:
    verdict = PathVerdict(tuple(judgement(f"path {i}", p, ROME) for i, p in enumerate(passes)))
    assert verdict.outcome is outcome


def test_unstable_names_where_the_paths_part_and_their_margins() -> None:
    verdict = PathVerdict((judgement("as built", True, ROME), judgement("fp32 twin", False, NAPOLI)))
    lines = verdict.explain(decode).splitlines()
    assert lines[0] == ("UNSTABLE: passes on as built, fails on fp32 twin; the verdict hangs on a near-tie that "
                        "another CPU may break either way")
    assert lines[1] == ("  the answers part at token 3: as built chose ' Rome' over ' Napoli' by 0.050; "
                        "fp32 twin chose ' Napoli' over ' Rome' by 0.070")
    assert "  as built: 'The capital is Rome<eos>'" in lines
    assert "  fp32 twin: 'The capital is Napoli<eos>'" in lines
    assert lines[-2:] == ["  why it fails on fp32 twin:", "  the answer on fp32 twin misses Rome"]


def test_a_failure_names_its_weakest_decisions_and_the_other_path() -> None:
    verdict = PathVerdict((judgement("as built", False, NAPOLI), judgement("fp32 twin", False, NAPOLI)))
    text = verdict.explain(decode)
    assert text.startswith("the answer on as built misses Rome\n")
    assert ("  weakest decisions (logit lead over the runner-up): token 3: ' Napoli' over ' Rome' by 0.070; "
            "token 4: '<eos>' over ' Milan' by 1.200; token 2: ' is' over ' Rome' by 2.400") in text
    assert text.endswith("  fails on the fp32 twin path too, with the same answer")


def test_a_failure_with_another_answer_on_the_twin_shows_it() -> None:
    verdict = PathVerdict((judgement("as built", False, NAPOLI), judgement("fp32 twin", False, ROME)))
    assert verdict.explain(decode).endswith("  fails on the fp32 twin path too: 'The capital is Rome<eos>'")


def test_a_passed_verdict_explains_nothing() -> None:
    assert PathVerdict((judgement("as built", True, ROME),)).explain(decode) == ""


def test_weakest_decisions_are_empty_without_margins() -> None:
    sampled = Generation((1,), (5, 2), "The", "eos", 0.0, (0.0, 0.0), 0.0)
    assert weakest_decisions(sampled, decode) == []
    assert weakest_decisions(ROME, decode, count=1) == ["token 3: ' Rome' over ' Napoli' by 0.050"]


def test_divergence_when_one_answer_stops_earlier() -> None:
    short = answer([5, 6, 2], [4.0, 3.0, 0.2], [6, 7, 7])
    lines = divergence_lines(judgement("a", True, short), judgement("b", False, ROME), decode)
    assert lines == ["  the answers part at token 2: a chose '<eos>' over ' is' by 0.200; "
                     "b chose ' is' over ' Rome' by 2.500"]


def test_divergence_in_the_second_of_several_answers() -> None:
    lines = divergence_lines(judgement("a", True, ROME, ROME), judgement("b", False, ROME, NAPOLI), decode)
    assert lines[0].startswith("  answer 2's token 3: a chose ' Rome'")
