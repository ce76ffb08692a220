import json

import pytest
from transformers import AutoTokenizer

from rayrag.assets import resolve_model
from rayrag.data.conversation import (ConversationError, format_conversation, format_messages,
                                      messages_to_conversation, parse_conversation)
from rayrag.data.mtrag import DOMAINS, load_human_tasks

CHAT = [("user", "where do the arizona cardinals play this week"), ("agent", "In Glendale,\nArizona."),
        ("user", "Do they play outside the US?")]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(resolve_model("splade-tiny").path)  # SPLADE-tiny's own (BERT) tokenizer


def _n(tok, text):
    return len(tok(text)["input_ids"])


def test_reproduces_every_questions_record(data_dir):
    """Formatting a human task's user turns gives its *_questions line byte for byte, all 777."""
    root = data_dir / "mtrag"
    records = {}
    for d in DOMAINS:
        for line in open(root / "mtrag-human" / "retrieval_tasks" / d / f"{d}_questions.jsonl"):
            obj = json.loads(line)
            records[obj["_id"]] = obj["text"]
    turns = load_human_tasks(root)
    assert len(turns) == len(records) == 777
    for t in turns:
        assert format_conversation(t.messages) == records[t.qid]
        assert format_conversation(parse_conversation(records[t.qid])) == records[t.qid]
        assert format_conversation([("user", t.last_turn)]).startswith("|user|: ")


def test_user_only_by_default_and_agent_on_one_line():
    assert format_conversation(CHAT) == ("|user|: where do the arizona cardinals play this week\n"
                                         "|user|: Do they play outside the US?")
    assert format_conversation(CHAT, with_agent=True).split("\n")[1] == "|agent|: In Glendale, Arizona."
    assert parse_conversation(format_conversation(CHAT, with_agent=True))[1] == ("agent", "In Glendale, Arizona.")


def test_messages_go_through_the_same_formatter(tok):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": CHAT[0][1]},
            {"role": "assistant", "content": CHAT[1][1]}, {"role": "user", "content": CHAT[2][1]}]
    assert messages_to_conversation(msgs) == CHAT
    for kw in ({}, {"with_agent": True}, {"tokenizer": tok, "max_tokens": 20}):
        assert format_messages(msgs, **kw) == format_conversation(CHAT, **kw)


def test_truncates_oldest_turns_first(tok):
    turns = [("user", f"question number {i} about the arizona cardinals") for i in range(40)]
    full = format_conversation(turns)
    assert _n(tok, full) > 256
    cut = format_conversation(turns, tok, 256)
    assert _n(tok, cut) <= 256 and full.endswith(cut)  # a suffix of whole turns
    assert cut.startswith("|user|: ")
    # the next older turn would not have fitted
    kept = cut.count("\n") + 1
    assert _n(tok, format_conversation(turns[-(kept + 1):])) > 256
    assert format_conversation(turns[:3], tok, 256) == format_conversation(turns[:3])  # fits: unchanged


def test_an_overlong_current_turn_loses_its_start(tok):
    words = " ".join(f"w{i}" for i in range(300))
    out = format_conversation([("user", "older turn"), ("user", words)], tok, 64)
    assert out.startswith("|user|: ") and out.endswith("w299") and _n(tok, out) <= 64
    assert "older" not in out and "w0 " not in out
    assert _n(tok, "|user|: w" + out.split("|user|: ")[1]) > 64  # nothing more could have stayed, give or take a token


@pytest.mark.parametrize("messages, message", [
    ([], r"messages must be a non-empty list"),
    ("hello", r"messages must be a non-empty list"),
    ([{"role": "user"}], r"messages\[0\]: expected an object with 'role' and 'content'"),
    ([{"role": "tool", "content": "x"}], r"messages\[0\]: unknown role 'tool'"),
    ([{"role": "user", "content": [{"type": "text", "text": "x"}]}], r"messages\[0\]: content must be a string, got list"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
     r"the last non-system message must be from the user"),
    ([{"role": "system", "content": "x"}], r"the last non-system message must be from the user"),
    ([{"role": "user", "content": "x"}, {"role": "user", "content": "  "}, {"role": "system", "content": "s"}],
     r"messages\[1\]: the last user message is empty"),
])
def test_bad_messages(messages, message):
    with pytest.raises(ConversationError, match=message):
        format_messages(messages)


@pytest.mark.parametrize("turns, message", [
    ([], r"conversation is empty"),
    ([("user", "a"), ("bot", "b"), ("user", "c")], r"turn 1: unknown speaker 'bot'"),
    ([("user", 3)], r"turn 0: text must be a string, got int"),
    ([("user", "a"), ("agent", "b")], r"the last turn must be the user's"),
    ([("user", "")], r"the last user turn is empty"),
])
def test_bad_turns(turns, message):
    with pytest.raises(ConversationError, match=message):
        format_conversation(turns)


def test_bad_arguments_and_lines(tok):
    with pytest.raises(ValueError, match="give both tokenizer and max_tokens"):
        format_conversation(CHAT, tokenizer=tok)
    with pytest.raises(ValueError, match="leaves no room"):
        format_conversation(CHAT, tok, 5)
    with pytest.raises(ConversationError, match=r"line 2 of the conversation does not start with"):
        parse_conversation("|user|: a\nuser: b")
