"""The arms of the MTRAG evaluation: query forms, students routed by fold, and the pairs tested.

A query form names the text a retriever searches with for a turn::

    last_turn                      the current user turn alone
    history                        the conversation so far (the one formatter, token budget)
    rewrite                        MTRAG's human standalone rewrite (the first teacher)
    rewrite:<name>=<file>          an LLM rewrite file (``{"_id": qid, "text": "|user|: ..."}``
                                   lines, the rewrite job's layout); ``{domain}`` in the path is
                                   replaced by each domain
    student:<name>=<folder>        a conversational SPLADE query encoder (the DiSCo student) on the
                                   history text, searching the retriever's index, whose document
                                   side stays the frozen SPLADE. ``{fold}`` in the folder (0-based,
                                   ``data/folds.py``) means one model per fold: every turn is
                                   encoded by the model that did not train on its conversation

Pairs are ``"<form> vs <form>"``; each is a paired randomization test by conversation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError
from .significance import parse_pair_list

PLAIN = ("last_turn", "history", "rewrite")
# (better-hoped form, baseline form) tested by default when both are evaluated
DEFAULT_PAIRS = (("history", "last_turn"), ("rewrite", "last_turn"), ("rewrite", "history"))
FOLD = "{fold}"


@dataclass(frozen=True)
class Form:
    name: str  # the key in results: "last_turn", "rewrite:gpt", "student:disco"
    kind: str  # last_turn | history | rewrite | llm_rewrite | student
    path: str = ""  # rewrite file or student folder (a template with {fold} / {domain})

    @property
    def per_fold(self) -> bool:
        return self.kind == "student" and FOLD in self.path


def parse_form(spec: str) -> Form:
    if not isinstance(spec, str):
        raise ConfigError(f"query_forms: expected strings, got {spec!r}")
    if spec in PLAIN:
        return Form(spec, spec)
    head, colon, rest = spec.partition(":")
    name, eq, path = rest.partition("=")
    if head in ("rewrite", "student") and colon and eq and name.strip() and path.strip():
        if not all(c.isalnum() or c in "-_." for c in name):
            raise ConfigError(f"query_forms: {spec!r}: the name may hold letters, digits, '-', '_' and '.' only")
        if head == "student" and "{domain}" in path:
            raise ConfigError(f"query_forms: {spec!r}: a student is one model for all domains; only {FOLD} may vary")
        return Form(f"{head}:{name}", "llm_rewrite" if head == "rewrite" else "student", path.strip())
    raise ConfigError(f"query_forms: unknown form {spec!r}; use {', '.join(PLAIN)}, rewrite:<name>=<file> "
                      f"or student:<name>=<folder, with {FOLD} for one model per fold>")


def parse_forms(specs: list[str], turns: str) -> list[Form]:
    if not specs:
        raise ConfigError("query_forms: give at least one form")
    forms = [parse_form(s) for s in specs]
    names = [f.name for f in forms]
    if len(set(names)) != len(names):
        raise ConfigError(f"query_forms: duplicate forms in {names}")
    if turns == "mtragun":
        bad = [f.name for f in forms if f.kind in ("rewrite", "llm_rewrite")]
        if bad:
            raise ConfigError(f"query_forms: mtragun-human has no rewrites; drop {bad} "
                              f"(it checks the student against last_turn and history)")
    return forms


def parse_pairs(pairs: list[str] | None, forms: list[Form]) -> list[tuple[str, str]]:
    """``"a vs b"`` -> (a, b); None: the default pairs among the forms given, and every student
    against every other form."""
    names = [f.name for f in forms]
    if pairs is None:
        out = [p for p in DEFAULT_PAIRS if p[0] in names and p[1] in names]
        students = [f.name for f in forms if f.kind == "student"]
        out += [(s, o) for s in students for o in names if o != s]
        return out
    try:
        return parse_pair_list(pairs, names)
    except ValueError as e:
        raise ConfigError(f"pairs: {e}") from None


def student_folders(form: Form, folds: int | None) -> dict[int, str]:
    """fold -> model folder (fold 0 only when the folder has no {fold}); every folder must exist."""
    if form.per_fold and folds is None:
        raise ConfigError(f"query_forms: {form.name} has {FOLD} in its folder; set folds (k) as in training")
    out = {i: form.path.replace(FOLD, str(i)) for i in (range(folds) if form.per_fold else [0])}
    for i, folder in out.items():
        if not (Path(folder).expanduser() / "config.json").is_file():
            raise DataError(f"{form.name}: {folder} is not a model folder (no config.json)"
                            + (f" for fold {i}" if form.per_fold else ""))
    return out


def fold_of_turns(turns, domains_turns, k: int, seed: int) -> dict[str, int]:
    """qid -> the fold whose *test* part holds its conversation (the model that never saw it).

    ``domains_turns`` are the turns the folds were dealt over in training (all of mtrag-human),
    not the evaluated subset: the deal depends on every conversation. A turn outside them (the
    ``mtragun-human`` check, conversations no fold trained on) goes to fold 0."""
    from ..data.folds import conversation_domains, conversation_folds

    test_fold = {c: f.index for f in conversation_folds(conversation_domains(domains_turns), k, seed) for c in f.test}
    return {t.qid: test_fold.get(t.conversation_id, 0) for t in turns}


def read_rewrites(form: Form, domain: str, qids: list[str]) -> dict[str, str]:
    """qid -> rewrite text for the evaluated turns of ``domain``; every one must be there."""
    from ..data.conversation import ConversationError, USER, parse_conversation
    from ..data.jsonl import read_jsonl, require_file

    path = require_file(Path(form.path.replace("{domain}", domain)).expanduser(), f"{form.name} rewrite file")
    wanted, out, first = set(qids), {}, {}
    for lineno, obj in read_jsonl(path):
        qid, text = obj.get("_id"), obj.get("text")
        if not isinstance(qid, str) or not isinstance(text, str):
            raise DataError(f"{path}:{lineno}: expected string fields '_id' and 'text'")
        if qid in first:
            raise DataError(f"{path}:{lineno}: duplicate id {qid!r} (first at line {first[qid]})")
        first[qid] = lineno
        if qid not in wanted:
            continue  # the file may cover more turns (other domains, all conversations)
        try:
            turns = parse_conversation(text)
        except ConversationError as e:
            raise DataError(f"{path}:{lineno}: {e}") from None
        if len(turns) != 1 or turns[0][0] != USER or not turns[0][1].strip():
            raise DataError(f"{path}:{lineno}: a rewrite must be one non-empty '|user|: ' line")
        out[qid] = turns[0][1]
    missing = [q for q in qids if q not in out]
    if missing:
        raise DataError(f"{path}: no rewrite for {len(missing)} evaluated turns of {domain}, e.g. {missing[0]!r}")
    return out
