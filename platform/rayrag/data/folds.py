"""K-fold cross-validation over conversations, stratified by domain.

Turns of one conversation share topic and wording, so a student that trained on turn 3 of a
conversation would be flattered on turn 4: folds split conversations, never turns. Each
domain's conversations are ordered by a seeded SHA-256 of their id (stable across machines
and Python versions, unlike ``hash()``) and dealt round-robin to the folds, continuing the deal
across domains, so every fold holds every domain and fold sizes differ by at most one
conversation per domain.

The recipe (learning rate, epochs, ...) is chosen once on :func:`recipe_holdout`: about 15
conversations held out of fold 0's training part, again stratified by domain; the recipe is
then frozen for all folds and never looks at any fold's test part.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Mapping

from ..errors import ConfigError, DataError
from .mtrag import ConversationTurn


@dataclass(frozen=True)
class Fold:
    index: int  # 0-based: "fold 1" of the write-ups is index 0
    train: tuple[str, ...]  # conversation ids, sorted
    test: tuple[str, ...]


def conversation_domains(turns: Iterable[ConversationTurn]) -> dict[str, str]:
    """conversation id -> its domain; a conversation spread over two domains is an error."""
    out: dict[str, str] = {}
    for t in turns:
        if out.setdefault(t.conversation_id, t.domain) != t.domain:
            raise DataError(f"conversation {t.conversation_id!r} has turns in {out[t.conversation_id]} and {t.domain}")
    return out


def _ordered(conversations: Iterable[str], seed: int, salt: str) -> list[str]:
    return sorted(conversations, key=lambda c: (hashlib.sha256(f"{salt}:{seed}:{c}".encode()).hexdigest(), c))


def _by_domain(domains: Mapping[str, str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for conv, dom in sorted(domains.items()):
        groups.setdefault(dom, []).append(conv)
    return groups


def conversation_folds(domains: Mapping[str, str], k: int = 5, seed: int = 0) -> list[Fold]:
    """Split conversations (``conversation_domains(turns)``) into ``k`` folds; each is a test part once."""
    if k < 2:
        raise ConfigError(f"k must be >= 2 folds, got {k}")
    groups = _by_domain(domains)
    small = {d: len(c) for d, c in groups.items() if len(c) < k}
    if small:
        raise ConfigError(f"cannot stratify {k} folds: too few conversations in {small}")
    fold_of: dict[str, int] = {}
    deal = 0
    for dom in sorted(groups):
        for conv in _ordered(groups[dom], seed, "fold"):
            fold_of[conv] = deal % k
            deal += 1
    return [Fold(i, tuple(sorted(c for c, f in fold_of.items() if f != i)),
                 tuple(sorted(c for c, f in fold_of.items() if f == i))) for i in range(k)]


def recipe_holdout(fold: Fold, domains: Mapping[str, str], size: int = 15,
                   seed: int = 0) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(train, holdout)``: ``size`` conversations of ``fold.train`` kept back to choose the recipe.

    Each domain gives its share of ``size`` in proportion to its conversations in ``fold.train``
    (largest remainders, ties by domain name), so the holdout mirrors the training mix.
    """
    groups = _by_domain({c: domains[c] for c in fold.train})
    total = sum(map(len, groups.values()))
    if not 0 < size < total:
        raise ConfigError(f"recipe holdout size must be between 1 and {total - 1}, got {size}")
    quota = {d: size * len(c) / total for d, c in groups.items()}
    take = {d: int(q) for d, q in quota.items()}
    for d in sorted(quota, key=lambda d: (-(quota[d] - take[d]), d))[:size - sum(take.values())]:
        take[d] += 1
    held = {c for d, convs in groups.items() for c in _ordered(convs, seed, "recipe")[:take[d]]}
    return tuple(c for c in fold.train if c not in held), tuple(sorted(held))
