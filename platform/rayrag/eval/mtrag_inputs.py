"""Everything the MTRAG evaluation reads, loaded and checked in the driver before Ray starts."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..data.beir import Document
from ..data.conversation import USER, format_conversation
from ..data.mtrag import ConversationTurn, load_human_tasks, load_mtragun, load_pool
from ..errors import ConfigError, DataError


@dataclass
class MtragInputs:
    dataset: str  # mtrag-human | mtragun-human
    turns: list[ConversationTurn]
    pools: dict[str, dict[str, Document]]  # domain -> passage id -> passage
    queries: dict[str, dict[str, dict[str, str]]]  # domain -> form -> qid -> query text
    truncated: int  # turns whose history lost its oldest turns to the token budget
    missing_from_pool: dict[str, int]  # domain -> judged passages that are not in its pool
    sparse: dict[str, bool] = field(default_factory=dict)  # retriever label -> has a SPLADE query encoder
    students: dict[str, dict[str, str]] = field(default_factory=dict)  # student form -> qid -> model folder
    student_folds: dict[str, dict] = field(default_factory=dict)  # student form -> {fold: {folder, turns}}

    @property
    def qrels(self) -> dict[str, dict[str, int]]:
        return {t.qid: t.qrels for t in self.turns}

    @property
    def conversation_of(self) -> dict[str, str]:
        return {t.qid: t.conversation_id for t in self.turns}

    def forms_for(self, label: str, domain: str) -> dict[str, dict[str, str]]:
        """A retriever's queries: student forms only for SPLADE retrievers (they swap its query encoder)."""
        return {f: q for f, q in self.queries[domain].items() if self.sparse.get(label) or f not in self.students}


def query_forms(turn: ConversationTurn, tokenizer, max_tokens: int, with_agent: bool = False) -> dict[str, str]:
    """The plain query forms of a turn, each through the one formatter (same budget for all)."""
    out = {
        "last_turn": format_conversation([(USER, turn.last_turn)], tokenizer, max_tokens),
        "history": format_conversation(turn.messages, tokenizer, max_tokens, with_agent=with_agent),
    }
    if turn.rewrite is not None:  # mtragun-human has none
        out["rewrite"] = format_conversation([(USER, turn.rewrite)], tokenizer, max_tokens)
    return out


def _is_sparse(spec: str, domains) -> bool:
    """SPLADE, or saved indexes (one per domain, all there now) whose manifests say sparse."""
    from ..search.registry import parse_spec

    s = parse_spec(spec.replace("{domain}", domains[0]))
    if s.kind == "splade":
        return True
    if s.kind != "index":
        return False
    kinds = set()
    for d in domains:
        mpath = Path(spec.replace("{domain}", d).partition(":")[2]) / "manifest.json"
        if not mpath.is_file():
            raise DataError(f"{mpath.parent} is not a finished rayrag index (no manifest.json)")
        kinds.add(json.loads(mpath.read_text()).get("kind"))
    return kinds == {"sparse"}


def load_inputs(cfg) -> MtragInputs:
    from ..assets import load_tokenizer, resolve_model
    from ..data.locate import dataset_dir
    from ..search.registry import parse_spec, split_label
    from .mtrag_arms import fold_of_turns, parse_forms, read_rewrites, student_folders

    root = dataset_dir(cfg.dataset, cfg.data_dir)
    if cfg.turns == "mtragun":
        turns = [t for t in load_mtragun(root) if t.domain in cfg.domains]
    else:
        turns = load_human_tasks(root, cfg.domains)
    if cfg.max_conversations:
        keep = {d: sorted({t.conversation_id for t in turns if t.domain == d})[:cfg.max_conversations]
                for d in cfg.domains}
        turns = [t for t in turns if t.conversation_id in keep[t.domain]]
    pools = {d: load_pool(root, d) for d in cfg.domains}
    sparse = {}
    for entry in cfg.retrievers:  # a model or index that cannot be found fails here, not in a Ray task
        label, spec = split_label(entry)
        for model in parse_spec(spec.replace("{domain}", cfg.domains[0])).models():
            resolve_model(model)
        sparse[label] = _is_sparse(spec, cfg.domains)
    forms = parse_forms(cfg.query_forms, cfg.turns)
    students = [f for f in forms if f.kind == "student"]
    if students and not any(sparse.values()):
        raise ConfigError(f"query_forms: {[f.name for f in students]} need a SPLADE retriever (splade:<model> "
                          f"or a sparse index:<folder>) whose documents the student's queries search")
    tokenizer = load_tokenizer(cfg.history_tokenizer)
    queries: dict[str, dict[str, dict[str, str]]] = {d: {f.name: {} for f in forms} for d in cfg.domains}
    truncated = 0
    for t in turns:
        plain = query_forms(t, tokenizer, cfg.history_max_tokens, cfg.with_agent)
        truncated += plain["history"] != format_conversation(t.messages, with_agent=cfg.with_agent)
        for f in forms:  # a student reads the same history text the history form searches with
            if f.kind != "llm_rewrite":
                queries[t.domain][f.name][t.qid] = plain["history" if f.kind == "student" else f.kind]
    for f in forms:
        if f.kind == "llm_rewrite":
            for d in cfg.domains:
                got = read_rewrites(f, d, [t.qid for t in turns if t.domain == d])
                queries[d][f.name] = {q: format_conversation([(USER, x)], tokenizer, cfg.history_max_tokens)
                                      for q, x in got.items()}
    routed, folds_info = _route_students(cfg, root, turns, students, fold_of_turns, student_folders)
    missing = {d: sum(p not in pools[d] for t in turns if t.domain == d for p in t.qrels) for d in cfg.domains}
    return MtragInputs("mtragun-human" if cfg.turns == "mtragun" else "mtrag-human", turns, pools, queries,
                       truncated, missing, sparse, routed, folds_info)


def _route_students(cfg, root, turns, students, fold_of_turns, student_folders):
    """student form -> qid -> the model folder that encodes it, and per fold its folder and turn count."""
    routed, info = {}, {}
    fold_of = None
    if any(f.per_fold for f in students):
        # the folds training dealt: over all of mtrag-human's fold_domains, not the evaluated subset
        fold_of = fold_of_turns(turns, load_human_tasks(root, cfg.fold_domains), cfg.folds, cfg.fold_seed)
    for f in students:
        folders = student_folders(f, cfg.folds)
        routed[f.name] = {t.qid: folders[fold_of[t.qid] if f.per_fold else 0] for t in turns}
        info[f.name] = {str(i): {"folder": folders[i], "turns": sum(v == folders[i] for v in routed[f.name].values())}
                        for i in folders}
    return routed, info
