"""Checks every answer must pass, whatever the case asks: clean text, honest stop, no leaks."""

from __future__ import annotations

from harness.checks.assertions import AnswerContext, template_leaks
from harness.deploy.templates import control_tokens, special_tokens
from harness.runtime import Generation, Runtime, SearchOptions

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


def stop_problems(answer: Generation, options: SearchOptions, context: AnswerContext) -> list[str]:
    """The stop reason must agree with the tokens: eos means the last token is an eos id, length
    means the token budget (or the context) was used up."""
    eos_token_ids = context.eos_token_ids
    context_full = answer.prompt_tokens + answer.output_tokens >= context.context_length
    if not answer.token_ids:
        return ["no tokens were generated"]
    last_is_eos = answer.token_ids[-1] in eos_token_ids
    if answer.stop_reason == "eos" and not last_is_eos:
        return [f"stop reason eos but the last token {answer.token_ids[-1]} is not an eos id {list(eos_token_ids)}"]
    if answer.stop_reason == "length" and answer.output_tokens < options.max_new_tokens and not context_full:
        return [f"stop reason length after {answer.output_tokens} tokens, below the budget of "
                f"{options.max_new_tokens}"]
    if answer.output_tokens > options.max_new_tokens:
        return [f"{answer.output_tokens} tokens generated, above the budget of {options.max_new_tokens}"]
    early = [i for i, t in enumerate(answer.token_ids[:-1]) if t in eos_token_ids]
    if early:
        return [f"generation went on past an eos token at position {early[0]}"]
    return []
