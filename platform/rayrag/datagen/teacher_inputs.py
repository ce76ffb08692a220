"""What the teacher-scoring job reads, loaded and checked in the driver before Ray starts.

Teachers are named ``human`` (MTRAG's ``*_rewrite`` files) or ``<name>=<path>``: the rewrite job's
output folder or any query file in the ``*_rewrite.jsonl`` layout (``{"_id": "<conv><::><turn>",
"text": "|user|: ..."}``) holding one rewrite per turn, e.g. from an LLM rewriter. Every query
text (the student's history, the last turn, each rewrite) goes through the one formatter with the
same token budget, so they are the texts evaluation and Serve encode.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..data.conversation import USER, format_conversation
from ..data.folds import conversation_domains, conversation_folds, recipe_holdout
from ..data.mtrag import ConversationTurn
from ..errors import ConfigError, DataError

HUMAN = "human"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_teacher(entry: str) -> tuple[str, str | None]:
    """``human`` -> ("human", None); ``name=path`` -> (name, path)."""
    name, sep, path = (s.strip() for s in entry.partition("="))
    if not _NAME.match(name):
        raise ConfigError(f"teachers: bad teacher name {name!r} in {entry!r} (letters, digits, . _ -)")
    if name == HUMAN:
        if sep:
            raise ConfigError(f"teachers: {HUMAN!r} is MTRAG's human rewrites and takes no file; name yours otherwise")
        return name, None
    if not sep or not path:
        raise ConfigError(f"teachers: unknown teacher {name!r}: give {HUMAN!r} or {name}=<rewrite job folder or "
                          f"*_rewrite.jsonl layout file>")
    return name, path


def read_rewrites(path: str | Path, need: list[str]) -> dict[str, str]:
    """qid -> rewrite text of every turn in ``need`` from a rewrite job's folder or a ``*_rewrite.jsonl``
    file (``load_rewrites``: format and checksum checked); it may hold more turns, never fewer."""
    from .rewrite import load_rewrites

    out = load_rewrites(path)
    missing = [q for q in need if q not in out]
    if missing:
        raise DataError(f"{path}: no rewrite for {len(missing)} of the {len(need)} turns to score "
                        f"(first: {missing[0]!r})")
    return out


def split_conversations(turns: list[ConversationTurn], fold: str, folds: int, seed: int, holdout: str,
                        holdout_size: int) -> tuple[dict[str, str], dict]:
    """conversation -> "train" | "eval" | "recipe", and the spec written to the manifest.

    ``fold=all``: every conversation trains. ``fold=k``: fold k's training part trains and its
    test part is ``eval``; with ``holdout=recipe`` the recipe holdout of that training part is
    ``recipe`` instead and the test part is left out entirely (choosing a recipe never sees it).
    """
    domains = conversation_domains(turns)
    if fold == "all":
        return {c: "train" for c in domains}, {"fold": "all"}
    f = conversation_folds(domains, folds, seed)[int(fold)]
    role = "recipe" if holdout == "recipe" else "eval"
    train, held = (recipe_holdout(f, domains, holdout_size, seed) if holdout == "recipe" else (f.train, f.test))
    spec = {"fold": int(fold), "folds": folds, "seed": seed, "holdout": holdout,
            "train_conversations": list(train), f"{role}_conversations": list(held)}
    if holdout == "recipe":
        spec["holdout_size"] = holdout_size
    return {**{c: "train" for c in train}, **{c: role for c in held}}, spec


def check_index(folder: Path, domain: str, pool_ids: set[str]) -> dict:
    """The index manifest of one domain, after checking it indexes exactly that domain's pool."""
    mpath = folder / "manifest.json"
    if not mpath.is_file():
        raise DataError(f"{folder}: no finished index for domain {domain!r} (no manifest.json); build it with "
                        f"jobs/configs/index_mtrag_pool_splade.yaml")
    manifest = json.loads(mpath.read_text())
    if manifest.get("kind") != "sparse":
        raise DataError(f"{folder}: a {manifest.get('kind')!r} index; teacher scores need a SPLADE (sparse) index")
    ids = (folder / "ids.txt").read_text().split("\n")[:-1] if (folder / "ids.txt").is_file() else []
    if set(ids) != pool_ids:
        raise DataError(f"{folder}: indexes {len(ids)} passages, not the {len(pool_ids)} of the {domain} pool "
                        f"({len(set(ids) - pool_ids)} extra, {len(pool_ids - set(ids))} missing)")
    return manifest


def index_model(manifests: dict[str, dict], model: str | None) -> str:
    """The SPLADE model every index was built with; ``model`` (if given) must be that model."""
    from ..assets import BUILTINS, resolve_model
    from ..encode.pipeline import model_fingerprint

    versions = {d: m.get("model_version") for d, m in manifests.items()}
    if len(set(versions.values())) != 1:
        raise DataError(f"the domain indexes were built with different models: {versions}")
    version = next(iter(versions.values()))
    first = next(iter(manifests.values()))
    ref = model or (first["model"] if first["model"] in BUILTINS else first.get("model_path", first["model"]))
    found = model_fingerprint(resolve_model(ref).path)
    if found != version:
        raise DataError(f"model {ref!r} (fingerprint {found[:12]}) is not the model the indexes were built with "
                        f"({first['model']!r}, fingerprint {str(version)[:12]}): scores would not match the index")
    return ref


@dataclass
class TurnTexts:
    """One turn, as a Ray task needs it: every query text made, positives that are in the pool."""

    qid: str
    conversation_id: str
    domain: str
    split: str  # "train" | "eval" | "recipe": the file it goes to
    query: str  # the student's input: user turns so far
    last_turn: str
    teacher_queries: dict[str, str]
    positives: list[str]


def turn_texts(turn: ConversationTurn, split: str, rewrites: dict[str, dict[str, str]], pool_ids: set[str],
               tokenizer, max_tokens: int) -> tuple[TurnTexts, int]:
    """The turn's texts and how many of its judged positives are missing from the pool."""
    def fmt(messages):
        return format_conversation(messages, tokenizer, max_tokens)

    teachers = {name: fmt([(USER, turn.rewrite if texts is None else texts[turn.qid])])
                for name, texts in rewrites.items()}
    judged = [d for d, r in turn.qrels.items() if r > 0]
    positives = [d for d in judged if d in pool_ids]
    return (TurnTexts(turn.qid, turn.conversation_id, turn.domain, split, fmt(turn.messages),
                      fmt([(USER, turn.last_turn)]), teachers, positives), len(judged) - len(positives))
