"""The model deployments: retriever (query encoder + index + passages) and reranker.

The constructor waits for the first load attempt, so a replica Serve routes traffic to has its
model and index in memory (a rolling update never sends requests to a half-loaded replica).
When that attempt fails (an index not there yet, MLflow down), the constructor returns anyway
and the replica keeps retrying every ``load_retry_s`` while it reports the error: the ingress
turns that into a failing readiness check and 503s, and the replica recovers by itself.
A failure no retry can mend (a reranker without trained weights) is reported as ``permanent``
and not retried, so ``serve run`` stops at once with the reason instead of waiting.
Requests are batched across callers with ``@serve.batch``. Batch size, wait and torch threads
come from ``user_config`` (``reconfigure``), so ``max_batch_size: 1`` turns batching off and
such a change reaches running replicas without a restart or a reload.
Inputs are checked before they join a batch: a batch shares one fate, and one bad request
must not fail the requests batched with it.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable

from ray import serve

from ..config import from_dict
from ..models.reranker import UntrainedReranker
from .config import ServeConfig
from .errors import BadInput, NotReady

log = logging.getLogger("ray.serve")


class _Loader:
    def __init__(self, what: str, build: Callable[[], Any], retry_s: float):
        self.what, self.value, self.error, self.permanent = what, None, "loading", False
        self._build, self._retry_s = build, retry_s
        self._first = threading.Event()
        threading.Thread(target=self._run, name=f"load-{what}", daemon=True).start()
        self._first.wait()

    def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            try:
                self.value = self._build()
                self.error = None
                log.info("%s loaded in %.1fs", self.what, time.perf_counter() - t0)
                return
            except UntrainedReranker as e:  # the same weights fail the same way: say so, stop
                self.error, self.permanent = f"{type(e).__name__}: {e}", True
                log.error("loading %s failed for good: %s", self.what, self.error)
                return
            except Exception as e:  # keep serving "not ready" with the reason; try again later
                self.error = f"{type(e).__name__}: {e}"
                log.error("loading %s failed (retrying in %ss): %s", self.what, self._retry_s, self.error)
            finally:
                self._first.set()
            time.sleep(self._retry_s)

    def get(self):
        if self.value is None:
            raise NotReady(f"{self.what} is not ready: {self.error}")
        return self.value

    def status(self) -> dict:
        return {"ready": self.value is not None, "error": self.error, "permanent": self.permanent}


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _set_batching(methods, user_config: dict) -> None:
    _threads(int(user_config.get("torch_threads", 1)))
    for m in methods:
        m.set_max_batch_size(int(user_config.get("max_batch_size", 1)))
        m.set_batch_wait_timeout_s(float(user_config.get("batch_wait_timeout_s", 0.0)))


@serve.deployment(name="Retriever")
class Retriever:
    def __init__(self, config: dict):
        from .engine import SearchEngine

        self.cfg = from_dict(ServeConfig, config)
        self.loader = _Loader("retriever", lambda: SearchEngine(self.cfg), self.cfg.load_retry_s)

    def reconfigure(self, user_config: dict) -> None:
        _set_batching([self._search_batch, self._embed_batch], user_config)

    def status(self) -> dict:
        out = self.loader.status()
        if out["ready"]:
            e = self.loader.value
            out.update(model=e.model_name, kind=e.kind, dim=e.dim, count=len(e.ids))
            if hasattr(e.encoder, "mode"):  # an LREM index: its mode and what the replica's router did
                out["reasoning"] = {"mode": e.encoder.mode, **e.stats}
        return out

    async def search(self, query: str, k: int) -> list[dict]:
        self.loader.get()
        if not isinstance(query, str) or not query.strip() or not isinstance(k, int) or k < 1:
            raise BadInput("query must be a non-empty string and k a positive integer")
        return await self._search_batch((query, k))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _search_batch(self, items: list[tuple[str, int]]) -> list[list[dict]]:
        engine = self.loader.get()
        depth = max(k for _, k in items)
        runs = await asyncio.to_thread(engine.search, [q for q, _ in items], depth)
        out = []
        for (_, k), run in zip(items, runs):
            docs = engine.passages
            out.append([{"id": d, "score": s, "title": docs[d].title, "text": docs[d].text} for d, s in run[:k]])
        return out

    async def format_messages(self, conversation: list[tuple[str, str]]) -> str:
        """A checked chat history -> the query text; here because the token budget is the encoder's."""
        from ..data.conversation import ConversationError

        engine = self.loader.get()
        try:
            return await asyncio.to_thread(engine.format_conversation, conversation)
        except (ConversationError, ValueError) as e:
            raise BadInput(str(e)) from None

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], list[int]]:
        self.loader.get()
        if not texts or not all(isinstance(t, str) and t for t in texts):
            raise BadInput("texts must be a non-empty list of non-empty strings")
        return await self._embed_batch(texts)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _embed_batch(self, items: list[list[str]]):
        engine = self.loader.get()
        flat = [t for texts in items for t in texts]
        vectors, tokens = await asyncio.to_thread(engine.embed, flat)
        out, s = [], 0
        for texts in items:
            out.append((vectors[s:s + len(texts)], tokens[s:s + len(texts)]))
            s += len(texts)
        return out


@serve.deployment(name="Reranker")
class Reranker:
    def __init__(self, config: dict):
        from .engine import RerankEngine

        self.cfg = from_dict(ServeConfig, config)
        self.loader = _Loader("reranker", lambda: RerankEngine(self.cfg), self.cfg.load_retry_s)

    def reconfigure(self, user_config: dict) -> None:
        _set_batching([self._score_batch], user_config)

    def status(self) -> dict:
        out = self.loader.status()
        if out["ready"]:
            out["model"] = self.loader.value.name
        return out

    async def score(self, query: str, docs: list[str]) -> list[float]:
        self.loader.get()
        if not isinstance(query, str) or not query.strip() or not all(isinstance(d, str) for d in docs):
            raise BadInput("query must be a non-empty string and docs a list of strings")
        if not docs:
            return []
        return await self._score_batch((query, docs))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
    async def _score_batch(self, items: list[tuple[str, list[str]]]) -> list[list[float]]:
        engine = self.loader.get()
        queries = [q for q, docs in items for _ in docs]
        flat = [d for _, docs in items for d in docs]
        scores = await asyncio.to_thread(engine.score_pairs, queries, flat)
        out, s = [], 0
        for _, docs in items:
            out.append([float(x) for x in scores[s:s + len(docs)]])
            s += len(docs)
        return out
