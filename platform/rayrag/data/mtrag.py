"""IBM MTRAG conversational retrieval data, read from the files as published.

Layout (under ``<data dir>/mtrag``)::

    mtrag-human/retrieval_tasks/<domain>/<domain>_lastturn.jsonl   the current user turn
    mtrag-human/retrieval_tasks/<domain>/<domain>_questions.jsonl  every user turn so far
    mtrag-human/retrieval_tasks/<domain>/<domain>_rewrite.jsonl    a human standalone rewrite
    mtrag-human/retrieval_tasks/<domain>/qrels/dev.tsv             judged passages per turn
    mtragun-human/generation_tasks/reference.jsonl                 other conversations, with agent turns
    mtragun-human/retrieval_tasks/qrels/<domain>.tsv               their judged passages
    pool/corpus/<domain>.jsonl                                     the passage pool (BEIR corpus format)

The two human sets share no conversation, so they are loaded separately: ``mtrag-human``
(777 turns, 110 conversations, three query forms) is the training and evaluation set,
``mtragun-human`` (332 judged turns, no rewrites) a zero-shot check. Query-ids are
``<conversation_id><::><turn>`` in both. Every loader validates all of its files before
returning and names file and line in each error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .beir import Document, load_corpus
from .conversation import USER, ConversationError, Message, parse_conversation
from .jsonl import read_jsonl, read_qrels, require_file

DOMAINS = ("clapnq", "cloud", "fiqa", "govt")
FORMS = ("lastturn", "questions", "rewrite")  # file suffixes of the three query forms
_COLLECTION = {"clapnq": "clapnq", "cloud": "cloud", "ibmcloud": "cloud", "fiqa": "fiqa", "govt": "govt"}
_SPEAKERS = {"user": "user", "agent": "agent"}


@dataclass(frozen=True)
class ConversationTurn:
    """One judged turn: the conversation up to and including the user's current question."""

    qid: str  # "<conversation_id><::><turn>", the id the qrels use
    conversation_id: str
    turn: int  # 1-based position of the user's turn in the conversation
    domain: str  # clapnq | cloud | fiqa | govt
    messages: tuple[Message, ...]  # (speaker, text) oldest first, ending with the current user turn;
    #                                mtrag-human has user turns only (that is all *_questions holds)
    rewrite: str | None  # human standalone rewrite of the current turn (mtrag-human only)
    qrels: dict[str, int] = field(default_factory=dict, compare=False)  # passage id -> relevance

    @property
    def last_turn(self) -> str:
        return self.messages[-1][1]

    @property
    def user_turns(self) -> tuple[str, ...]:
        return tuple(t for s, t in self.messages if s == USER)


def split_qid(qid: str, where: str) -> tuple[str, int]:
    conv, sep, turn = qid.rpartition("<::>")
    if not sep or not conv or not turn.isdigit() or int(turn) < 1:
        raise DataError(f"{where}: id {qid!r} is not '<conversation_id><::><turn>' with a turn >= 1")
    return conv, int(turn)


def _read_form(path: Path) -> dict[str, tuple[int, list[Message]]]:
    """qid -> (line, parsed turns) of one query-form file; each text is ``|user|: ...`` lines."""
    require_file(path, "MTRAG query file")
    out: dict[str, tuple[int, list[Message]]] = {}
    for lineno, obj in read_jsonl(path):
        qid, text = obj.get("_id"), obj.get("text")
        if not isinstance(qid, str) or not isinstance(text, str):
            raise DataError(f"{path}:{lineno}: expected string fields '_id' and 'text'")
        split_qid(qid, f"{path}:{lineno}")
        if qid in out:
            raise DataError(f"{path}:{lineno}: duplicate id {qid!r} (first at line {out[qid][0]})")
        try:
            turns = parse_conversation(text)
        except ConversationError as e:
            raise DataError(f"{path}:{lineno}: {e}") from None
        if any(s != USER for s, _ in turns) or not turns[-1][1].strip():
            raise DataError(f"{path}:{lineno}: expected non-empty '|user|: ' lines only")
        out[qid] = (lineno, turns)
    if not out:
        raise DataError(f"{path}: no queries")
    return out


def _same_ids(forms: dict[str, dict], paths: dict[str, Path]) -> None:
    first = FORMS[0]
    for other in FORMS[1:]:
        for a, b in ((first, other), (other, first)):
            missing = [q for q in forms[a] if q not in forms[b]]
            if missing:
                q = missing[0]
                raise DataError(f"{paths[a]}:{forms[a][q][0]}: turn {q!r} has no line in {paths[b]} "
                                f"({len(missing)} such turns); every turn needs all three query forms")


def _load_domain(root: Path, domain: str) -> list[ConversationTurn]:
    base = root / "mtrag-human" / "retrieval_tasks" / domain
    paths = {f: base / f"{domain}_{f}.jsonl" for f in FORMS}
    forms = {f: _read_form(p) for f, p in paths.items()}
    _same_ids(forms, paths)
    qrels = _read_judgments(require_file(base / "qrels" / "dev.tsv", "MTRAG qrels file"), forms["questions"])
    turns = []
    for qid, (lineno, history) in forms["questions"].items():
        conv, turn = split_qid(qid, f"{paths['questions']}:{lineno}")
        if len(history) != turn:  # *_questions holds exactly the user turns 1..turn
            raise DataError(f"{paths['questions']}:{lineno}: turn {turn} of {conv!r} lists {len(history)} "
                            f"user turns, expected {turn}")
        last_line, last = forms["lastturn"][qid]
        if len(last) != 1 or last[0][1] != history[-1][1]:
            raise DataError(f"{paths['lastturn']}:{last_line}: the last turn of {qid!r} differs from the last "
                            f"user turn in {paths['questions'].name} line {lineno}")
        rw_line, rewrite = forms["rewrite"][qid]
        if len(rewrite) != 1:
            raise DataError(f"{paths['rewrite']}:{rw_line}: a rewrite must be one '|user|: ' line")
        if qid not in qrels:
            raise DataError(f"{base / 'qrels' / 'dev.tsv'}: turn {qid!r} ({paths['questions'].name} line "
                            f"{lineno}) has no relevant passage")
        turns.append(ConversationTurn(qid, conv, turn, domain, tuple(history), rewrite[0][1], qrels[qid]))
    return turns


def _read_judgments(path: Path, known: dict) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for lineno, qid, docid, rel in read_qrels(path):
        if qid not in known:
            raise DataError(f"{path}:{lineno}: turn {qid!r} is not among the tasks it judges")
        if docid in qrels.get(qid, {}):
            raise DataError(f"{path}:{lineno}: duplicate judgment for ({qid!r}, {docid!r})")
        qrels.setdefault(qid, {})[docid] = rel
    # A turn whose judgments are all 0 has nothing to find: treat it as unjudged.
    return {q: j for q, j in qrels.items() if any(r > 0 for r in j.values())}


def _check_domains(domains) -> tuple[str, ...]:
    domains = tuple(domains)
    bad = [d for d in domains if d not in DOMAINS]
    if bad or not domains:
        raise DataError(f"unknown MTRAG domain(s) {bad}; valid: {', '.join(DOMAINS)}")
    return domains


def load_human_tasks(root: str | Path, domains=DOMAINS) -> list[ConversationTurn]:
    """The MTRAG human retrieval tasks: every turn with its three query forms and judgments."""
    root = Path(root)
    turns = [t for d in _check_domains(domains) for t in _load_domain(root, d)]
    domain_of: dict[str, str] = {}
    for t in turns:
        if domain_of.setdefault(t.conversation_id, t.domain) != t.domain:
            raise DataError(f"conversation {t.conversation_id!r} appears in both {domain_of[t.conversation_id]} "
                            f"and {t.domain} under {root / 'mtrag-human' / 'retrieval_tasks'}")
    return turns


def load_pool(root: str | Path, domain: str) -> dict[str, Document]:
    """One domain's passage pool (``pool/corpus/<domain>.jsonl``); each domain is indexed alone."""
    _check_domains([domain])
    return load_corpus(Path(root) / "pool" / "corpus" / f"{domain}.jsonl")


def _parse_task(obj: dict, path: Path, lineno: int) -> tuple[str, str, int, str, tuple[Message, ...]]:
    for key in ("task_id", "conversation_id", "turn", "input", "Collection"):
        if key not in obj:
            raise DataError(f"{path}:{lineno}: missing field {key!r}")
    task_id, conv = obj["task_id"], obj["conversation_id"]
    if not isinstance(task_id, str) or not isinstance(conv, str):
        raise DataError(f"{path}:{lineno}: 'task_id' and 'conversation_id' must be strings")
    conv_in_id, turn = split_qid(task_id, f"{path}:{lineno}")
    if conv_in_id != conv or str(obj["turn"]) != str(turn):
        raise DataError(f"{path}:{lineno}: task_id {task_id!r} disagrees with conversation_id {conv!r} "
                        f"and turn {obj['turn']!r}")
    if obj["Collection"] not in _COLLECTION:
        raise DataError(f"{path}:{lineno}: unknown Collection {obj['Collection']!r}")
    inp = obj["input"]
    if not isinstance(inp, list) or not inp:
        raise DataError(f"{path}:{lineno}: 'input' must be a non-empty list of turns")
    messages = []
    for i, t in enumerate(inp):
        if not isinstance(t, dict) or t.get("speaker") not in _SPEAKERS or not isinstance(t.get("text"), str):
            raise DataError(f"{path}:{lineno}: input[{i}] needs 'speaker' (user or agent) and string 'text'")
        messages.append((_SPEAKERS[t["speaker"]], t["text"]))
    if messages[-1][0] != USER or not messages[-1][1].strip():
        raise DataError(f"{path}:{lineno}: the last input turn must be the user's (non-empty) question")
    return task_id, conv, turn, _COLLECTION[obj["Collection"]], tuple(messages)


def load_mtragun(root: str | Path) -> list[ConversationTurn]:
    """The judged ``mtragun-human`` turns with their chat history (agent turns included).

    ``reference.jsonl`` also holds tasks that no qrels file judges (unanswerable turns and
    the like); they are left out, since there is nothing to retrieve for them.
    """
    root = Path(root)
    ref = require_file(root / "mtragun-human" / "generation_tasks" / "reference.jsonl", "MTRAG reference file")
    tasks: dict[str, tuple[int, tuple]] = {}
    for lineno, obj in read_jsonl(ref):
        parsed = _parse_task(obj, ref, lineno)
        if parsed[0] in tasks:
            raise DataError(f"{ref}:{lineno}: duplicate task_id {parsed[0]!r} (first at line {tasks[parsed[0]][0]})")
        tasks[parsed[0]] = (lineno, parsed)
    if not tasks:
        raise DataError(f"{ref}: no tasks")
    turns = []
    for domain in DOMAINS:
        path = require_file(root / "mtragun-human" / "retrieval_tasks" / "qrels" / f"{domain}.tsv", "MTRAG qrels file")
        for qid, judged in _read_judgments(path, tasks).items():
            lineno, (_, conv, turn, collection, messages) = tasks[qid]
            if collection != domain:
                raise DataError(f"{path}: judges turn {qid!r}, which {ref.name} line {lineno} puts in {collection}")
            turns.append(ConversationTurn(qid, conv, turn, domain, messages, None, judged))
    return turns
