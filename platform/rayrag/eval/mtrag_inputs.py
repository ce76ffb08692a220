"""Everything the MTRAG evaluation reads, loaded and checked in the driver before Ray starts."""
from __future__ import annotations

from dataclasses import dataclass

from ..data.beir import Document
from ..data.conversation import USER, format_conversation
from ..data.mtrag import ConversationTurn, load_human_tasks, load_pool


@dataclass
class MtragInputs:
    turns: list[ConversationTurn]
    pools: dict[str, dict[str, Document]]  # domain -> passage id -> passage
    queries: dict[str, dict[str, dict[str, str]]]  # domain -> form -> qid -> query text
    truncated: int  # turns whose history lost its oldest turns to the token budget
    missing_from_pool: dict[str, int]  # domain -> judged passages that are not in its pool

    @property
    def qrels(self) -> dict[str, dict[str, int]]:
        return {t.qid: t.qrels for t in self.turns}

    @property
    def conversation_of(self) -> dict[str, str]:
        return {t.qid: t.conversation_id for t in self.turns}


def query_forms(turn: ConversationTurn, tokenizer, max_tokens: int) -> dict[str, str]:
    """The three query forms of a turn, each through the one formatter (same budget for all)."""
    return {
        "last_turn": format_conversation([(USER, turn.last_turn)], tokenizer, max_tokens),
        "history": format_conversation(turn.messages, tokenizer, max_tokens),
        "rewrite": format_conversation([(USER, turn.rewrite)], tokenizer, max_tokens),
    }


def load_inputs(cfg) -> MtragInputs:
    from transformers import AutoTokenizer

    from ..assets import resolve_model
    from ..data.locate import dataset_dir
    from ..search.registry import parse_spec, split_label

    root = dataset_dir(cfg.dataset, cfg.data_dir)
    turns = load_human_tasks(root, cfg.domains)
    if cfg.max_conversations:
        keep = {d: sorted({t.conversation_id for t in turns if t.domain == d})[:cfg.max_conversations]
                for d in cfg.domains}
        turns = [t for t in turns if t.conversation_id in keep[t.domain]]
    pools = {d: load_pool(root, d) for d in cfg.domains}
    for entry in cfg.retrievers:  # a model that cannot be found fails here, not in a Ray task
        for model in parse_spec(split_label(entry)[1]).models():
            resolve_model(model)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.history_tokenizer).path)
    queries: dict[str, dict[str, dict[str, str]]] = {d: {f: {} for f in cfg.query_forms} for d in cfg.domains}
    truncated = 0
    for t in turns:
        forms = query_forms(t, tokenizer, cfg.history_max_tokens)
        truncated += forms["history"] != format_conversation(t.messages)
        for f in cfg.query_forms:
            queries[t.domain][f][t.qid] = forms[f]
    missing = {d: sum(p not in pools[d] for t in turns if t.domain == d for p in t.qrels) for d in cfg.domains}
    return MtragInputs(turns, pools, queries, truncated, missing)
