"""An LREM reasoning embedder behind the dense encoder's interface, for encode, index search and Serve.

Documents are embedded directly (``<text><emb>``), so the encode job writes an ordinary dense
index. Queries follow ``mode``:
- ``on``: a greedy keyword CoT, then the embedding after it (the paper);
- ``off``: ``<query><emb>`` directly (the paper's baseline);
- ``auto`` (beyond the paper, which describes no router): embed directly, look up the top two
  scores in the index, and reason only when their margin is below ``margin``: a small margin
  means the direct embedding cannot tell its best candidates apart, the case reasoning is for.
  The caller gives the index lookup (``top2``), so the same routing works over an in-memory
  matrix, a FAISS index or a served index.

``cot`` ablates the thought a query embeds after (mode on/auto): ``own`` (the model's),
``empty``, ``random`` (random vocabulary tokens, seeded per query) or ``query`` (the query's own
tokens repeated as the thought, cut to the CoT limit): the paper's reasoning-text ablations.
``file:<jsonl>`` embeds after given thoughts instead: each line's ``cot`` for its ``query`` (the CoT
job's output). With the oracle teacher run on held-out queries this bounds what any thought the
model could write is worth to its embedding, which tells a policy that writes useless thoughts
apart from an embedder that cannot use good ones. A query the file lacks gets the empty thought;
``given_share`` counts those that had one.

``stats`` counts since construction: the share of queries that reasoned (``routed_share``),
and for the model's own CoTs the share well-formed before any closing token is forced
(``format_valid``) and their mean length (``cot_tokens``).
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from .reasoning import ReasoningModel

MODES = ("on", "off", "auto")
COTS = ("own", "empty", "random", "query")


class ReasoningEncoder:
    def __init__(self, model: str | ReasoningModel, mode: str = "on", margin: float = 0.02, cot: str = "own",
                 max_length: int | None = None, max_query_tokens: int | None = None, device: str | None = None):
        """``model``: a folder, HF id or built-in name, or a ``ReasoningModel`` in memory (training's
        end-of-epoch evaluation). ``max_length`` / ``max_query_tokens`` override the document and
        query truncation the model was trained with."""
        if mode not in MODES:
            raise ValueError(f"reasoning mode must be one of {MODES}, got {mode!r}")
        given = read_thoughts(cot) if isinstance(cot, str) and cot.startswith("file:") else None
        if given is None and cot not in COTS:
            raise ValueError(f"cot must be one of {COTS} or file:<jsonl>, got {cot!r}")
        if margin < 0:
            raise ValueError(f"reasoning margin must be >= 0, got {margin}")
        if isinstance(model, ReasoningModel):
            self.rm, self.name = model, "reasoning"
        else:
            from ..assets import resolve_model
            from .reasoning import load_reasoning

            self.rm, self.name = load_reasoning(resolve_model(model).path, device=device), str(model)
        if max_length or max_query_tokens:
            limits = self.rm.limits
            self.rm.limits = replace(limits, max_doc_tokens=max_length or limits.max_doc_tokens,
                                     max_query_tokens=max_query_tokens or limits.max_query_tokens)
        self.mode, self.margin, self.cot, self.given = mode, margin, cot, given
        self._counts = {"queries": 0, "reasoned": 0, "own": 0, "valid": 0, "cot_tokens": 0, "given": 0}

    # --- the dense encoder's interface ---
    @property
    def dim(self) -> int:
        return self.rm.dim

    @property
    def tokenizer(self):
        return self.rm.tokenizer

    @property
    def max_length(self) -> int:
        """The query budget (a chat history is cut to it)."""
        return self.rm.limits.max_query_tokens

    @property
    def routes(self) -> bool:
        """Whether ``encode_queries`` needs the index's ``top2`` lookup."""
        return self.mode == "auto"

    def encode_docs(self, texts: Sequence[str], batch_size: int = 32, desc: str | None = None,
                    progress: bool = True) -> np.ndarray:
        return self.rm.embed(self.rm.items(texts), batch_size, desc if progress else None)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 32, desc: str | None = None,
                       progress: bool = True, top2: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """[N, H] query embeddings under ``mode``. ``top2``: direct embeddings [N, H] -> the index's
        two best scores per query [N, 2], best first (needed by ``auto``)."""
        texts = list(texts)
        desc = desc if progress else None
        self._counts["queries"] += len(texts)
        if self.mode == "on":
            return self._reason(texts, batch_size, desc)
        q = self.rm.embed(self.rm.direct_queries(texts), batch_size, desc)
        if self.mode == "off" or not texts:
            return q
        if top2 is None:
            raise ValueError("reasoning mode auto routes by the index's top-2 margin: pass top2")
        best = np.asarray(top2(q), dtype=np.float32)
        hard = np.flatnonzero(best[:, 0] - best[:, 1] < self.margin)
        if len(hard):
            q[hard] = self._reason([texts[i] for i in hard], batch_size, desc)
        return q

    def _reason(self, texts: list[str], batch_size: int, desc: str | None) -> np.ndarray:
        rm = self.rm
        self._counts["reasoned"] += len(texts)
        if self.cot == "own":
            emb, cots = rm.embed_queries(texts, batch_size=batch_size, desc=desc)
            self._counts["own"] += len(cots)
            self._counts["valid"] += sum(c.valid for c in cots)
            self._counts["cot_tokens"] += sum(c.length for c in cots)
            return emb
        prompts = rm.query_prompts(texts)
        if self.given is not None:
            found = [self.given.get(t) for t in texts]
            self._counts["given"] += sum(c is not None for c in found)
            # cot_ids closes each thought with </think>; the empty one is closed by query_with_cot
            thoughts = [ids if c is not None else [] for c, ids in zip(found, rm.cot_ids([c or "" for c in found]))]
        elif self.cot == "empty":
            thoughts = [[] for _ in texts]
        elif self.cot == "query":
            thoughts = [p[:-1][:rm.limits.max_cot_tokens] for p in prompts]
        else:  # random: the own CoT's length is unknown without generating; use half the limit
            thoughts = [_random_thought(t, len(rm.tokenizer), rm.special_ids, rm.limits.max_cot_tokens // 2)
                        for t in texts]
        return rm.embed(rm.query_with_cot(prompts, thoughts), batch_size, desc)

    @property
    def stats(self) -> dict[str, float]:
        c = self._counts
        out = {"routed_share": c["reasoned"] / c["queries"] if c["queries"] else 0.0}
        if c["own"]:
            out.update(format_valid=c["valid"] / c["own"], cot_tokens=c["cot_tokens"] / c["own"])
        if self.given is not None and c["reasoned"]:
            out["given_share"] = c["given"] / c["reasoned"]
        return out


def read_thoughts(cot: str) -> dict[str, str]:
    """``file:<jsonl>`` -> {query text: thought text}; a missing file, a malformed line, a line
    without a string ``query`` and ``cot``, or one query given two different thoughts is refused."""
    from pathlib import Path

    from ..data.jsonl import read_jsonl, require_file
    from ..errors import DataError

    path = require_file(Path(cot[len("file:"):]), f"cot={cot!r}: the thoughts file (the CoT job's output)")
    out: dict[str, str] = {}
    for lineno, obj in read_jsonl(path):
        q, c = obj.get("query"), obj.get("cot")
        if not isinstance(q, str) or not isinstance(c, str):
            raise DataError(f"{path}:{lineno}: needs string fields 'query' and 'cot'")
        if out.setdefault(q, c) != c:
            raise DataError(f"{path}:{lineno}: query {q[:60]!r} is given two different thoughts")
    if not out:
        raise DataError(f"{path}: holds no thoughts")
    return out


def _random_thought(text: str, vocab: int, special: set[int], n: int) -> list[int]:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little"))
    return [int(i) for i in rng.integers(0, vocab, n) if int(i) not in special]


def load_dense_encoder(model: str, max_length: int | None = None, side: str = "query", reasoning: str | None = None,
                       margin: float = 0.02, cot: str = "own"):
    """The dense-side encoder for a model reference: a ``ReasoningEncoder`` when the folder is an
    LREM export (``rayrag_reasoning.json``), else a ``DenseEncoder``. ``max_length`` truncates the
    ``side`` this encoder is for (query or doc). ``reasoning`` (on/off/auto) and a ``cot`` ablation
    are refused for a model that cannot reason, rather than silently ignored."""
    from ..assets import resolve_model
    from .reasoning import is_reasoning_model

    if side not in ("query", "doc"):
        raise ValueError(f"side must be query or doc, got {side!r}")
    if is_reasoning_model(resolve_model(model).path):
        trunc = {"max_query_tokens": max_length} if side == "query" else {"max_length": max_length}
        return ReasoningEncoder(model, mode=reasoning or "on", margin=margin, cot=cot, **trunc)
    if reasoning is not None or cot != "own":
        what = f"reasoning={reasoning!r}" if reasoning is not None else f"cot={cot!r}"
        raise ValueError(f"{what} was set, but {model} is not a reasoning embedder "
                         f"(no rayrag_reasoning.json): it embeds queries directly")
    from .dense import DenseEncoder

    return DenseEncoder(model, max_length=max_length)
