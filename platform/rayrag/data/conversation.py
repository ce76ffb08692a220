"""One conversation formatter: the query text a conversational retriever encodes.

Training, evaluation, the ``mtragun-human`` check and Serve all call :func:`format_conversation`,
so the text a student learns from is the text it is later asked about. The layout is MTRAG's
``*_questions`` files: one line per turn, oldest first, ``|user|: <text>`` joined by ``\\n``;
assistant turns, when asked for, are ``|agent|: <text>`` lines (MTRAG's speaker name). Formatting
a human task's user turns gives its ``*_questions`` record byte for byte (tests check all 777).

Truncation, when a tokenizer and ``max_tokens`` are given, drops whole turns from the oldest
until the tokenized text (special tokens included) fits, so an encoder's own right-truncation
never cuts the current turn. The current turn is always kept; only when it alone is too long
are its *first* tokens dropped (its end kept), the same oldest-first rule applied within it.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from ..errors import RayragError

USER, AGENT = "user", "agent"
SPEAKERS = (USER, AGENT)
_PREFIX = {USER: "|user|: ", AGENT: "|agent|: "}
# OpenAI chat roles -> MTRAG speakers. "system" carries instructions, not conversation: dropped.
_ROLES = {"user": USER, "assistant": AGENT}
_NEWLINES = re.compile(r"\s*[\r\n]+\s*")

Message = tuple[str, str]  # (speaker, text)


class ConversationError(RayragError, ValueError):
    """A conversation or chat ``messages`` list that cannot be formatted; says which entry."""


def _line(speaker: str, text: str) -> str:
    # One line per turn keeps the layout parseable; assistant answers often hold newlines.
    return _PREFIX[speaker] + _NEWLINES.sub(" ", text)


def _check(messages: Sequence[Message]) -> None:
    if not messages:
        raise ConversationError("conversation is empty: give at least the current user turn")
    for i, m in enumerate(messages):
        if not (isinstance(m, (tuple, list)) and len(m) == 2):
            raise ConversationError(f"turn {i}: expected a (speaker, text) pair, got {m!r}")
        speaker, text = m
        if speaker not in SPEAKERS:
            raise ConversationError(f"turn {i}: unknown speaker {speaker!r}; use {' or '.join(SPEAKERS)}")
        if not isinstance(text, str):
            raise ConversationError(f"turn {i}: text must be a string, got {type(text).__name__}")
    if messages[-1][0] != USER:
        raise ConversationError(f"the last turn must be the user's (the question to retrieve for), "
                                f"got {messages[-1][0]!r}")
    if not messages[-1][1].strip():
        raise ConversationError("the last user turn is empty")


def format_conversation(messages: Sequence[Message], tokenizer: Any = None, max_tokens: int | None = None,
                        with_agent: bool = False) -> str:
    """``[(speaker, text), ...]`` (oldest first, last one the user's) -> the query text.

    ``with_agent=False`` (default) keeps user turns only, as in MTRAG's ``*_questions``.
    With ``tokenizer`` (a Hugging Face fast tokenizer) and ``max_tokens``, the oldest turns are
    dropped until the text, with special tokens, is at most ``max_tokens`` tokens long.
    """
    _check(messages)
    if (tokenizer is None) != (max_tokens is None):
        raise ValueError("give both tokenizer and max_tokens, or neither")
    lines = [_line(s, t) for s, t in messages if with_agent or s == USER]
    if tokenizer is None:
        return "\n".join(lines)
    if max_tokens < 3:
        raise ValueError(f"max_tokens must be >= 3 (special tokens and one word), got {max_tokens}")
    kept = 0
    # Grow from the newest turn back; the first suffix that no longer fits ends the search.
    while kept < len(lines) and _count(tokenizer, "\n".join(lines[-(kept + 1):])) <= max_tokens:
        kept += 1
    if kept:
        return "\n".join(lines[-kept:])
    return _cut_start(tokenizer, messages[-1][1], max_tokens)


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])


def _cut_start(tokenizer: Any, text: str, max_tokens: int) -> str:
    """The current turn alone is too long: drop its first tokens until the line fits."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("cutting an over-long turn needs a fast tokenizer (character offsets)")
    text = _NEWLINES.sub(" ", text)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    drop = 0
    while drop < len(offsets):
        line = _line(USER, text[offsets[drop][0]:])
        over = _count(tokenizer, line) - max_tokens
        if over <= 0:
            return line
        drop += over  # re-tokenising at the new start can differ by a token: the loop checks again
    raise ValueError(f"max_tokens={max_tokens} leaves no room for any text after the '|user|: ' prefix")


def parse_conversation(text: str) -> list[Message]:
    """The inverse of :func:`format_conversation` without truncation: lines -> (speaker, text)."""
    out: list[Message] = []
    for i, line in enumerate(text.split("\n"), 1):
        speaker = next((s for s, p in _PREFIX.items() if line.startswith(p)), None)
        if speaker is None:
            raise ConversationError(f"line {i} of the conversation does not start with "
                                    f"{' or '.join(repr(p) for p in _PREFIX.values())}: {line[:60]!r}")
        out.append((speaker, line[len(_PREFIX[speaker]):]))
    return out


def messages_to_conversation(messages: Any) -> list[Message]:
    """OpenAI-style ``[{"role": "user"|"assistant", "content": str}, ...]`` -> (speaker, text) pairs.

    ``system`` messages are dropped (instructions, not conversation). Anything else is refused
    with the index of the offending message, so Serve can answer 400 with a useful message.
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ConversationError("messages must be a non-empty list of {'role', 'content'} objects")
    out: list[Message] = []
    last_at = -1  # index in ``messages`` of the last non-system message
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ConversationError(f"messages[{i}]: expected an object with 'role' and 'content'")
        role, content = m["role"], m["content"]
        if role == "system":
            continue
        if role not in _ROLES:
            raise ConversationError(f"messages[{i}]: unknown role {role!r}; use 'user', 'assistant' or 'system'")
        if not isinstance(content, str):
            raise ConversationError(f"messages[{i}]: content must be a string, got {type(content).__name__}")
        out.append((_ROLES[role], content))
        last_at = i
    if not out or out[-1][0] != USER:
        raise ConversationError("the last non-system message must be from the user (the question to retrieve for)")
    if not out[-1][1].strip():
        raise ConversationError(f"messages[{last_at}]: the last user message is empty")
    return out


def format_messages(messages: Any, tokenizer: Any = None, max_tokens: int | None = None,
                    with_agent: bool = False) -> str:
    """Serve's entry: chat ``messages`` through the same formatter as training and evaluation."""
    return format_conversation(messages_to_conversation(messages), tokenizer, max_tokens, with_agent)
