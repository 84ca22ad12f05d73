"""Checks every answer must pass, whatever the case asks: clean text, honest stop, no leaks."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from harness.checks.assertions import AnswerContext, template_leaks
from harness.deploy.templates import control_tokens, special_tokens
from harness.runtime.protocol import Generation, Runtime, SearchOptions

REPLACEMENT_CHARACTER = "\ufffd"


def answer_context(runtime: Runtime) -> AnswerContext:
    """The model's control tokens (tokenizer specials and the chat template's) and their ids."""
    info = runtime.info
    tokenizer_specials = control_tokens(info.path) if (info.path / "tokenizer.json").is_file() else ()
    tokens = tuple(dict.fromkeys([*tokenizer_specials, *special_tokens(info.chat_template or "")]))
    ids = [runtime.encode(token) for token in tokens]
    return AnswerContext(info.eos_token_ids, info.context_length, tokens, tuple(i[0] for i in ids if len(i) == 1))


def format_problems(answer: Generation, options: SearchOptions, context: AnswerContext) -> list[str]:
    """What is wrong with the answer's form; an empty list means it is well-formed."""
    problems: list[str] = []
    try:
        answer.text.encode("utf-8")
    except UnicodeEncodeError as exc:
        problems.append(f"text is not valid UTF-8 ({exc.reason} at character {exc.start})")
    # A length stop may cut a multi-byte character between its byte tokens: a trailing U+FFFD is then the
    # budget's doing, not the model's.
    text = answer.text.rstrip(REPLACEMENT_CHARACTER) if answer.stop_reason == "length" else answer.text
    if REPLACEMENT_CHARACTER in text:
        problems.append(f"text has U+FFFD replacement characters at {_positions(text)} "
                        "(bytes that did not decode)")
    problems.extend(template_leaks(answer, context))
    problems.extend(stop_problems(answer, options, context))
    return problems


def _positions(text: str) -> list[int]:
    return [i for i, c in enumerate(text) if c == REPLACEMENT_CHARACTER][:5]


@dataclass(frozen=True)
class StopFacts:
    """How an answer's tokens end, read against the model's eos ids: what the stop-reason rule looks at."""

    ends_on_eos: bool  # the last token is an eos id
    eos_inside: tuple[int, ...]  # positions of eos tokens before the last token: generation went on past them

    @classmethod
    def of(cls, token_ids: Sequence[int], eos_token_ids: Collection[int]) -> StopFacts:
        return cls(bool(token_ids) and token_ids[-1] in eos_token_ids,
                   tuple(i for i, t in enumerate(token_ids[:-1]) if t in eos_token_ids))

    def agrees(self, stop_reason: str) -> bool:
        """The stop reason is eos exactly when the last token is an eos id."""
        return (stop_reason == "eos") == self.ends_on_eos


def token_problems(token_ids: Sequence[int], stop_reason: str, eos_token_ids: Sequence[int], limit: int) -> list[str]:
    """Every problem with how an answer's tokens stop (empty list: none): at least one token, at most
    ``limit``, no eos inside, and the stop reason eos exactly when the last token is an eos id."""
    facts = StopFacts.of(token_ids, eos_token_ids)
    problems = []
    if not token_ids:
        problems.append("no output token")
    if len(token_ids) > limit:
        problems.append(f"{len(token_ids)} output tokens where at most {limit} were asked for")
    if facts.eos_inside:
        problems.append(f"eos token inside the answer at positions {list(facts.eos_inside)}")
    if not facts.agrees(stop_reason):
        problems.append(f"stop reason {stop_reason!r} but the last token {list(token_ids[-1:])} "
                        f"{'is' if facts.ends_on_eos else 'is not'} an eos id {list(eos_token_ids)}")
    return problems


def stop_problems(answer: Generation, options: SearchOptions, context: AnswerContext) -> list[str]:
    """The stop reason must agree with the tokens: eos means the last token is an eos id, length
    means the token budget (or the context) was used up. The first problem only."""
    eos_token_ids = context.eos_token_ids
    context_full = answer.prompt_tokens + answer.output_tokens >= context.context_length
    if not answer.token_ids:
        return ["no tokens were generated"]
    facts = StopFacts.of(answer.token_ids, eos_token_ids)
    if answer.stop_reason == "eos" and not facts.ends_on_eos:
        return [f"stop reason eos but the last token {answer.token_ids[-1]} is not an eos id {list(eos_token_ids)}"]
    if answer.stop_reason == "length" and answer.output_tokens < options.max_new_tokens and not context_full:
        return [f"stop reason length after {answer.output_tokens} tokens, below the budget of "
                f"{options.max_new_tokens}"]
    if answer.output_tokens > options.max_new_tokens:
        return [f"{answer.output_tokens} tokens generated, above the budget of {options.max_new_tokens}"]
    if facts.eos_inside:
        return [f"generation went on past an eos token at position {facts.eos_inside[0]}"]
    return []
