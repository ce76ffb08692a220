"""The model deployments: retriever (query encoder + index + passages) and reranker.

Start-up waits for the first load attempt (the reranker's constructor; the retriever's first
``reconfigure``, which Serve calls before the replica takes requests), so a replica Serve routes
traffic to has its model and index in memory (a rolling update never sends requests to a
half-loaded replica). When that attempt fails (an index not there yet, MLflow down), start-up ends anyway
and the replica keeps retrying every ``load_retry_s`` while it reports the error: the ingress
turns that into a failing readiness check and 503s, and the replica recovers by itself.
A failure no retry can mend (a reranker without trained weights) is reported as ``permanent``
and not retried, so ``serve run`` stops at once with the reason instead of waiting.
Requests are batched across callers by ``batching.DrainBatcher`` (the next batch forms when the
running one ends: no wait timer at low load). Batch size, wait and torch threads come from
``user_config`` (``reconfigure``), so ``max_batch_size: 1`` turns batching off and such a change
reaches running replicas without a restart or a reload.
Inputs are checked before they join a batch: a batch shares one fate, and one bad request
must not fail the requests batched with it.
The retriever's index comes from ``user_config`` too (``INDEX_FIELDS``): the first ``reconfigure``
loads it, and a later one with other index settings swaps it in place (``Retriever._swap``).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable

from ray import serve

from ..config import from_dict, to_dict
from ..errors import UntrainedReranker
from .batching import DrainBatcher
from .config import INDEX_FIELDS, ServeConfig
from .errors import BadInput, NotReady

log = logging.getLogger("ray.serve")


class _Loader:
    def __init__(self, what: str, build: Callable[[], Any], retry_s: float):
        self.what, self.value, self.error, self.permanent = what, None, "loading", False
        self._build, self._retry_s = build, retry_s
        self._first, self._stopped = threading.Event(), False
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
            if self._stopped:
                return

    def stop(self) -> None:
        """No more retries: other settings replaced these before they ever loaded."""
        self._stopped = True

    def get(self):
        if self.value is None:
            raise NotReady(f"{self.what} is not ready: {self.error}")
        return self.value

    def status(self) -> dict:
        return {"ready": self.value is not None, "error": self.error, "permanent": self.permanent}


def _memory_mb() -> dict:
    """This replica's resident memory in MB (Linux): ``rss_mb`` counts file pages it has mapped
    (memory-mapped passages it touched: page cache, shared by the node's replicas and
    reclaimable), ``private_mb`` only its own (anonymous) memory: what each replica really costs."""
    try:
        with open("/proc/self/status") as f:
            kb = {line.split(":")[0]: int(line.split()[1]) for line in f if line.startswith(("VmRSS", "RssAnon"))}
        return {"rss_mb": round(kb["VmRSS"] / 1024, 1), "private_mb": round(kb["RssAnon"] / 1024, 1)}
    except (OSError, KeyError, ValueError):
        return {}


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _set_batching(batchers: list[DrainBatcher], user_config: dict) -> None:
    # `serve deploy` and a RayService hand user_config to reconfigure without our config checks:
    # a bad value fails the reconfigure with the reason (a batch size of 0 would spin forever)
    size, wait = user_config.get("max_batch_size", 1), user_config.get("batch_wait_timeout_s", 0.0)
    threads = user_config.get("torch_threads", 1)
    # bool is an int subclass: `max_batch_size: true` in YAML is a mistake, not a batch size of 1
    if any(isinstance(v, bool) for v in (size, wait, threads)) or not (
            isinstance(size, int) and size >= 1 and isinstance(threads, int) and threads >= 1
            and isinstance(wait, (int, float)) and wait >= 0):
        raise ValueError(f"user_config needs integers max_batch_size >= 1 and torch_threads >= 1 and "
                         f"batch_wait_timeout_s >= 0, got {size!r}, {threads!r}, {wait!r}")
    _threads(threads)
    for b in batchers:
        b.max_batch_size, b.wait_s = size, float(wait)


@serve.deployment(name="Retriever")
class Retriever:
    def __init__(self, config: dict):
        self.cfg = from_dict(ServeConfig, config)
        # Serve calls reconfigure right after the constructor, before any request: the index
        # settings it gets (user_config) are the ones to load, so the constructor loads nothing.
        self.loader: _Loader | None = None
        self.served: dict | None = None  # the index settings self.loader holds (or is retrying)
        self.swap_error: str | None = None
        self._search_batch = DrainBatcher(self._search_many)
        self._embed_batch = DrainBatcher(self._embed_many)

    async def reconfigure(self, user_config: dict) -> None:
        _set_batching([self._search_batch, self._embed_batch], user_config)
        try:
            cfg = from_dict(ServeConfig, {**to_dict(self.cfg), **{k: user_config[k] for k in INDEX_FIELDS
                                                                   if k in user_config}})
        except Exception as e:
            if self.loader is None:
                raise  # nothing serves yet: the deployment fails with the reason
            return self._refuse(str(user_config.get("index")), e)
        if cfg.index_settings() == self.served:  # batching only, or the served index asked for again
            self.swap_error = None
            return
        if self.loader is None or self.loader.value is None:
            await self._load(cfg)
        else:
            await self._swap(cfg)

    async def _load(self, cfg: ServeConfig) -> None:
        """No index serves yet, so there is none to protect: load (and keep retrying) this one."""
        from .engine import SearchEngine

        if self.loader is not None:
            self.loader.stop()
        # in a thread: the first attempt blocks (as a constructor would) but the event loop answers
        self.loader = await asyncio.to_thread(_Loader, "retriever", lambda: SearchEngine(cfg), cfg.load_retry_s)
        self.served, self.swap_error = cfg.index_settings(), None

    async def _swap(self, cfg: ServeConfig) -> None:
        """Load and check the new index beside the served one, then switch in one assignment.

        Requests keep being answered by the old engine meanwhile (the load runs in a thread), and a
        batch already running finishes on the engine it started with. A failure is reported, never
        raised: Serve replaces a replica whose reconfigure raised, and the new one would start on
        the index that just failed, so the old index keeps serving instead."""
        from .engine import SearchEngine  # its loading checks checksums, id map, dimension, corpus

        t0 = time.perf_counter()
        log.info("loading index %s beside %s", cfg.index, self.served["index"])
        try:
            engine = await asyncio.to_thread(SearchEngine, cfg)
        except Exception as e:
            return self._refuse(cfg.index, e)
        self.loader.value = engine
        self.served, self.swap_error = cfg.index_settings(), None
        log.info("now serving index %s (swapped in after %.1fs)", cfg.index, time.perf_counter() - t0)

    def _refuse(self, index: str, e: Exception) -> None:
        self.swap_error = f"{index}: {type(e).__name__}: {e}"
        log.error("index swap refused, still serving %s: %s", self.served["index"], self.swap_error)

    def _engine(self):
        if self.loader is None:
            raise NotReady("retriever is not ready: loading")
        return self.loader.get()

    def status(self) -> dict:
        if self.loader is None:
            return {"ready": False, "error": "loading", "permanent": False}
        out = self.loader.status()
        out["index"] = self.served["index"]
        if self.swap_error:  # the index asked for last, refused: the one above still serves
            out["swap_error"] = self.swap_error
        if out["ready"]:
            e = self.loader.value
            out.update(model=e.model_name, kind=e.kind, dim=e.dim, count=len(e.ids),
                       shards=len(e.manifest.get("shards", [])) or 1,
                       shard_actors=bool(getattr(e.loaded.index, "on_actors", False)), **_memory_mb(),
                       batching={"search": self._search_batch.stats(), "embed": self._embed_batch.stats()})
            if hasattr(e.encoder, "mode"):  # an LREM index: its mode and what the replica's router did
                out["reasoning"] = {"mode": e.encoder.mode, **e.stats}
        return out

    async def search(self, query: str, k: int) -> list[dict]:
        self._engine()
        if not isinstance(query, str) or not query.strip() or not isinstance(k, int) or k < 1:
            raise BadInput("query must be a non-empty string and k a positive integer")
        return await self._search_batch((query, k))

    async def noop_search(self, query: str, k: int) -> list[dict]:
        """The bench's no-model route: the same call and reply shape as ``search``, no work."""
        return []

    async def _search_many(self, items: list[tuple[str, int]]) -> list[list[dict]]:
        engine = self._engine()
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

        engine = self._engine()
        try:
            return await asyncio.to_thread(engine.format_conversation, conversation)
        except (ConversationError, ValueError) as e:
            raise BadInput(str(e)) from None

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], list[int]]:
        self._engine()
        if not texts or not all(isinstance(t, str) and t for t in texts):
            raise BadInput("texts must be a non-empty list of non-empty strings")
        return await self._embed_batch(texts)

    async def _embed_many(self, items: list[list[str]]):
        engine = self._engine()
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
        self._score_batch = DrainBatcher(self._score_many)

    def reconfigure(self, user_config: dict) -> None:
        _set_batching([self._score_batch], user_config)

    def status(self) -> dict:
        out = self.loader.status()
        if out["ready"]:
            out.update(model=self.loader.value.name, batching={"score": self._score_batch.stats()})
        return out

    async def score(self, query: str, docs: list[str]) -> list[float]:
        self.loader.get()
        if not isinstance(query, str) or not query.strip() or not all(isinstance(d, str) for d in docs):
            raise BadInput("query must be a non-empty string and docs a list of strings")
        if not docs:
            return []
        return await self._score_batch((query, docs))

    async def _score_many(self, items: list[tuple[str, list[str]]]) -> list[list[float]]:
        engine = self.loader.get()
        queries = [q for q, docs in items for _ in docs]
        flat = [d for _, docs in items for d in docs]
        scores = await asyncio.to_thread(engine.score_pairs, queries, flat)
        out, s = [], 0
        for _, docs in items:
            out.append([float(x) for x in scores[s:s + len(docs)]])
            s += len(docs)
        return out
