"""The FastAPI ingress and the application builder Serve imports (``rayrag.serve.app:build_app``).

    HTTP -> Ingress (validation, auth, composition) --handle--> Retriever (batched encode + index)
                                                    --handle--> Reranker (batched pair scoring)

With ``retriever_in_ingress`` the Retriever runs inside each ingress replica instead (the same
class, called in-process through ``_InProcess``), and only the reranker is a hop away.

Every range check happens here, against the config's limits, before any replica works.
No ``from __future__ import annotations`` in this module: Serve's class-based ingress rebuilds
the endpoint signatures, and FastAPI then cannot resolve string annotations, so a request
body silently turns into a query-string parameter.
"""

import asyncio
import base64
import inspect
import os
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from ray import serve
from ray.serve.handle import DeploymentHandle

from .. import __version__
from ..config import from_dict, to_dict
from ..search.fusion import minmax
from ..search.rerank import check_interpolation_weight
from .admission import AdmissionMiddleware, Gate
from .auth import KeyCheck, check_exposure, is_loopback, load_key, serve_http_host
from .config import ServeConfig
from .deployments import Reranker, Retriever
from .errors import ApiError, BadInput, NotReady, install_handlers
from .openapi import document
from .schemas import (Embedding, EmbeddingsRequest, EmbeddingsResponse, Health, ModelCard, ModelList, Readiness,
                      RerankDocument, RerankRequest, RerankResponse, RerankResult, SearchHit, SearchRequest,
                      SearchResponse, Usage)

# /openapi.json and /docs are the Ingress's own routes: the schema states this deployment's
# limits, key and models, which FastAPI's static one cannot know (openapi.py).
api = FastAPI(title="rayrag", version=__version__, openapi_url=None, docs_url=None, redoc_url=None,
              description="Retrieval for RAG: search with optional reranking, OpenAI-compatible embeddings, "
                          "Cohere/Jina-style rerank. Errors are `{\"error\": {message, type, param, code}}`.")
install_handlers(api)
api.add_middleware(AdmissionMiddleware)
bearer = HTTPBearer(auto_error=False, description="API key, when the server has one configured")


def require_key(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """The API key check as a route dependency: FastAPI solves dependencies before it validates
    the body, so a keyless call with a wrong body is told 401 (its first problem), not 400.
    (A body that is not JSON at all is refused while it is read, before any dependency.) The
    check is this replica's Ingress's, found as the admission middleware finds its gate."""
    serve.get_replica_context().servable_object.check_key(creds)


def _unicode(value: str, param: str) -> None:
    """JSON may carry a lone UTF-16 surrogate (``"\\ud800"``) and Python keeps it in the string, but
    tokenizers and the UTF-8 encoding of the answer fail on it: it was a 500, and it failed every
    request batched with it. It is not text, so it is refused here as the 400 it is."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ApiError(400, f"{param} holds a lone UTF-16 surrogate at index {e.start}, which is not text",
                       param=param, code="invalid_unicode") from None


def _text(value: str, param: str, limit: int) -> str:
    _unicode(value, param)
    if not value.strip():
        raise ApiError(400, f"{param} must not be empty or whitespace", param=param, code="empty")
    if len(value) > limit:
        raise ApiError(400, f"{param} is {len(value)} characters; the limit is {limit}", param=param,
                       code="too_long")
    return value


def _in_range(value: int, param: str, high: int) -> int:
    if not 1 <= value <= high:
        raise ApiError(400, f"{param} must be between 1 and {high}, got {value}", param=param, code="out_of_range")
    return value


def _conversation(messages: list, lim) -> list[tuple[str, str]]:
    """Chat ``messages`` -> (speaker, text) pairs, every limit and rule checked with its ``param``."""
    from ..data.conversation import ConversationError, messages_to_conversation

    if not 1 <= len(messages) <= lim.max_messages:
        raise ApiError(400, f"messages has {len(messages)} items; give 1 to {lim.max_messages}", param="messages",
                       code="out_of_range" if messages else "empty")
    total = 0
    for i, m in enumerate(messages):
        _unicode(m.content, f"messages[{i}].content")
        if len(m.content) > lim.max_message_chars:
            raise ApiError(400, f"messages[{i}].content is {len(m.content)} characters; the limit is "
                           f"{lim.max_message_chars}", param=f"messages[{i}].content", code="too_long")
        total += len(m.content)
    if total > lim.max_conversation_chars:
        raise ApiError(400, f"messages hold {total} characters in all; the limit is {lim.max_conversation_chars}",
                       param="messages", code="too_long")
    try:  # the formatter's own rules (last non-system message is a non-empty user turn)
        return messages_to_conversation([{"role": m.role, "content": m.content} for m in messages])
    except ConversationError as e:
        raise ApiError(400, str(e), param="messages", code="invalid_conversation") from None


async def _call(response) -> Any:
    try:
        return await response
    except NotReady as e:
        raise ApiError(503, str(e).splitlines()[-1], code="not_ready", headers={"Retry-After": "5"}) from None
    except BadInput as e:
        raise ApiError(400, str(e).splitlines()[-1], code="invalid_input") from None


def interpolation_weight(body: SearchRequest) -> float | None:
    """``rerank_interpolate``, checked by the rule the evaluate job's config uses."""
    w = body.rerank_interpolate
    if w is None:
        return None
    if not body.rerank:
        raise ApiError(400, "rerank_interpolate needs rerank: true", param="rerank_interpolate", code="out_of_range")
    try:
        return check_interpolation_weight(w)
    except ValueError as e:
        raise ApiError(400, f"rerank_interpolate: {e}", param="rerank_interpolate", code="out_of_range") from None


def _full(hit: dict) -> str:
    """What the reranker reads: BEIR's title + space + text, as the encoders do."""
    return f"{hit['title']} {hit['text']}".strip() if hit["title"] else hit["text"]


# How long the ingress trusts the retriever's model name, kind and dimension (the index, and so
# the model, can be swapped under it: Retriever.reconfigure) and Serve's replica states: this
# bounds how stale they get.
INFO_TTL_S = 1.0


def _encode(vector, fmt: str) -> list[float] | str:
    v = np.asarray(vector, dtype="<f4")
    return base64.b64encode(v.tobytes()).decode() if fmt == "base64" else v.tolist()


# Helpers the ingress uses are defined above it: serve.ingress copies the class when it is
# decorated, and names defined after that point are missing inside the replica.
def _deployment_states() -> dict[str, dict]:
    """This application's deployments as the Serve controller sees them: status and replica
    counts by state (e.g. {"Retriever": {"status": "HEALTHY", "replicas": {"RUNNING": 2}}})."""
    app = serve.get_replica_context().app_name
    overview = serve.status().applications.get(app)
    if overview is None:
        return {}
    return {name: {"status": str(getattr(d.status, "value", d.status)),
                   "replicas": {str(getattr(k, "value", k)): n for k, n in d.replica_states.items() if n}}
            for name, d in overview.deployments.items()}


class _InProcess:
    """An object in this replica, called as a DeploymentHandle is (``await obj.method.remote(...)``),
    so the routes read the same with the retriever here or a hop away. Its exceptions (NotReady,
    BadInput) reach ``_call`` as they are, as a handle's do."""

    def __init__(self, target):
        self._target = target

    def __getattr__(self, name: str):
        method = getattr(self._target, name)

        async def call(*args, **kwargs):
            out = method(*args, **kwargs)
            return await out if inspect.isawaitable(out) else out

        wrapped = SimpleNamespace(remote=call)
        setattr(self, name, wrapped)  # made once per method name, not on every request
        return wrapped


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    def __init__(self, config: dict, retriever: DeploymentHandle, reranker: DeploymentHandle | None):
        self.cfg = from_dict(ServeConfig, config)
        self.limits = self.cfg.limits
        key, host = load_key(self.cfg.auth), serve_http_host()
        check_exposure(self.cfg.auth, key, host)  # here too: `serve deploy` and RayService skip our CLI
        self.check_key = KeyCheck(key)
        self.gate = Gate(self.cfg.admission, self.limits)  # read by AdmissionMiddleware
        # Readiness details (model names, paths, load errors) go to authenticated callers only;
        # with no key that is whoever can reach a loopback address, i.e. this machine.
        self.open_details = key is None and is_loopback(host)
        # the Retriever class itself, here: Serve calls this replica's reconfigure with its user_config
        self.local = Retriever.func_or_class(self.cfg.model_args()) if retriever is None else None
        self.retriever = _InProcess(self.local) if retriever is None else retriever
        self.reranker = reranker
        # which Serve deployment's replicas each readiness entry reports
        self._deployment = {"retriever": "Ingress" if retriever is None else "Retriever", "reranker": "Reranker"}
        self._info: dict | None = None
        self._info_at = 0.0
        self._states: dict[str, dict] = {}
        self._states_at = float("-inf")

    async def reconfigure(self, user_config: dict) -> None:
        """Only with the retriever in this replica: its batching and index settings (a swap)."""
        if self.local is not None:
            await self.local.reconfigure(user_config)

    async def _retriever_info(self) -> dict:
        if self._info is None or time.monotonic() - self._info_at > INFO_TTL_S:
            status = await self.retriever.status.remote()
            if not status["ready"]:
                raise ApiError(503, f"retriever is not ready: {status['error']}", code="not_ready",
                               headers={"Retry-After": "5"})
            self._info, self._info_at = status, time.monotonic()
        return self._info

    async def _deployment_states(self) -> dict[str, dict]:
        # a controller round trip: asked at most once per INFO_TTL_S, so a probe stays cheap
        if time.monotonic() - self._states_at > INFO_TTL_S:
            self._states, self._states_at = await asyncio.to_thread(_deployment_states), time.monotonic()
        return self._states

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self, request: Request) -> dict:
        try:
            info = await self._retriever_info()
        except ApiError:  # still loading: the schema without the model's name and dimension
            info = None
        return document(request.app.openapi(), self.cfg, info, auth=self.check_key.enabled,
                        root_path=request.scope.get("root_path", ""))

    @api.get("/docs", include_in_schema=False)
    async def docs(self, request: Request):
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title="rayrag")

    @api.get("/healthz", response_model=Health, summary="liveness: the HTTP server answers")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/readyz", response_model=Readiness, response_model_exclude_none=True,
             summary="readiness: 200 once model, index and reranker are loaded, else 503; "
                     "details (models, errors) only for authenticated callers")
    async def readyz(self, creds=Depends(bearer)):
        if creds is not None:
            self.check_key(creds)  # a wrong key is a 401, not a quiet downgrade
        details = self.open_details or (creds is not None and self.check_key.enabled)
        calls = {"retriever": self.retriever.status.remote()}
        if self.reranker is not None:
            calls["reranker"] = self.reranker.status.remote()
        results = dict(zip(calls, await asyncio.gather(*calls.values())))
        ready = all(r["ready"] for r in results.values())
        if details:  # Serve's own view: a killed replica shows here until its replacement runs
            serve_view = await self._deployment_states()
            for name, r in results.items():
                if self._deployment[name] in serve_view:
                    r["serve"] = serve_view[self._deployment[name]]
        body = {"status": "ready" if ready else "not_ready", **(results if details else {})}
        if ready:
            return body
        from fastapi.responses import JSONResponse

        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    @api.post("/search", response_model=SearchResponse, summary="retrieve (and optionally rerank) passages")
    async def search(self, body: SearchRequest, _: None = Depends(require_key)) -> SearchResponse:
        lim = self.limits
        if (body.query is None) == (body.messages is None):
            raise ApiError(400, "give exactly one of query and messages", param="query" if body.query is None
                           else "messages", code="query_or_messages")
        conversation = None
        if body.messages is not None:
            conversation = _conversation(body.messages, lim)
        else:
            query = _text(body.query, "query", lim.max_query_chars)
        k = _in_range(self.cfg.default_k if body.k is None else body.k, "k", lim.max_k)
        rerank_k = _in_range(self.cfg.default_rerank_k if body.rerank_k is None else body.rerank_k, "rerank_k",
                             lim.max_rerank_k)
        w = interpolation_weight(body)
        if body.rerank and self.reranker is None:
            raise ApiError(400, "this server has no reranker configured", param="rerank", code="no_reranker")
        info = await self._retriever_info()
        if conversation is not None:  # no LLM call: the query encoder reads the conversation itself
            query = await _call(self.retriever.format_messages.remote(conversation))
        hits = await _call(self.retriever.search.remote(query, max(k, rerank_k) if body.rerank else k))
        results = [dict(h, stage="retriever", retriever_score=h["score"]) for h in hits]
        if body.rerank and results:
            head, tail = results[:rerank_k], results[rerank_k:]
            scores = await _call(self.reranker.score.remote(query, [_full(h) for h in head]))
            for h, s in zip(head, scores):
                h.update(score=s, stage="reranker")
            if w is not None:  # the fusion the evaluate job's rerank_interpolate measures
                first, second = minmax([h["retriever_score"] for h in head]), minmax(scores)
                for h, a, b in zip(head, first, second):
                    h.update(score=(1.0 - w) * a + w * b, stage="interpolated")
            # stable sort: equal reranker scores keep the retriever's order
            results = sorted(head, key=lambda h: -h["score"]) + tail
        return SearchResponse(query=query, k=k, reranked=body.rerank, model=info["model"],
                              reranker=self.cfg.reranker_name or self.cfg.reranker if body.rerank else None,
                              results=[SearchHit(rank=i + 1, **h) for i, h in enumerate(results[:k])])

    if os.environ.get("RAYRAG_BENCH_ROUTES") == "1":  # read at import, in each ingress replica
        @api.post("/bench/noop-search", response_model=SearchResponse, include_in_schema=False)
        async def noop_search(self, body: SearchRequest, _: None = Depends(require_key)) -> SearchResponse:
            """Bench only: exactly /search's hops (proxy -> ingress -> Retriever handle -> back) with
            no model work, so bench/serve_cost.py can tell the path's cost from the model's."""
            query, k = body.query or "", body.k or self.cfg.default_k
            hits = await _call(self.retriever.noop_search.remote(query, k))
            return SearchResponse(query=query, k=k, reranked=False, model="none", reranker=None, results=hits)

    @api.post("/v1/embeddings", response_model=EmbeddingsResponse, summary="OpenAI-compatible embeddings")
    async def embeddings(self, body: EmbeddingsRequest, _: None = Depends(require_key)) -> EmbeddingsResponse:
        info = await self._retriever_info()
        if body.model != info["model"]:
            raise ApiError(404, f"model {body.model!r} does not exist; this server embeds with {info['model']!r}",
                           param="model", code="model_not_found")
        if info["kind"] != "dense":
            raise ApiError(400, f"model {info['model']!r} is a sparse encoder and has no dense embeddings",
                           param="model", code="unsupported_model")
        if body.dimensions is not None and body.dimensions != info["dim"]:
            raise ApiError(400, f"dimensions must be {info['dim']} for this model", param="dimensions",
                           code="unsupported_dimensions")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts:
            raise ApiError(400, "input must not be an empty list", param="input", code="empty")
        if len(texts) > self.limits.max_embedding_inputs:
            raise ApiError(400, f"input has {len(texts)} items; the limit is {self.limits.max_embedding_inputs}",
                           param="input", code="too_many_inputs")
        for i, t in enumerate(texts):
            _text(t, f"input[{i}]" if not isinstance(body.input, str) else "input", self.limits.max_input_chars)
        vectors, tokens = await _call(self.retriever.embed.remote(texts))
        data = [Embedding(index=i, embedding=_encode(v, body.encoding_format)) for i, v in enumerate(vectors)]
        return EmbeddingsResponse(data=data, model=info["model"],
                                  usage=Usage(prompt_tokens=sum(tokens), total_tokens=sum(tokens)))

    @api.post("/v1/rerank", response_model=RerankResponse, response_model_exclude_none=True,
              summary="Cohere/Jina-style rerank")
    async def rerank(self, body: RerankRequest, _: None = Depends(require_key)) -> RerankResponse:
        if self.reranker is None:  # the same answer as /search with rerank: true
            raise ApiError(400, "this server has no reranker configured", param="model", code="no_reranker")
        name = self.cfg.reranker_name or self.cfg.reranker
        if body.model is not None and body.model != name:
            raise ApiError(404, f"model {body.model!r} does not exist; this server reranks with {name!r}",
                           param="model", code="model_not_found")
        query = _text(body.query, "query", self.limits.max_query_chars)
        docs = [d if isinstance(d, str) else d.text for d in body.documents]
        if not 1 <= len(docs) <= self.limits.max_rerank_documents:
            raise ApiError(400, f"documents has {len(docs)} items; give 1 to {self.limits.max_rerank_documents}",
                           param="documents", code="out_of_range")
        for i, d in enumerate(docs):
            _text(d, f"documents[{i}]", self.limits.max_input_chars)
        top_n = len(docs) if body.top_n is None else _in_range(body.top_n, "top_n", self.limits.max_rerank_documents)
        scores = await _call(self.reranker.score.remote(query, docs))
        order = sorted(range(len(docs)), key=lambda i: -scores[i])[:top_n]
        return RerankResponse(model=name, results=[
            RerankResult(index=i, relevance_score=scores[i],
                         document=RerankDocument(text=docs[i]) if body.return_documents else None) for i in order])

    @api.get("/v1/models", response_model=ModelList, summary="OpenAI-compatible model list")
    async def models(self, _: None = Depends(require_key)) -> ModelList:
        names = [(await self._retriever_info())["model"]]
        if self.reranker is not None:
            names.append(self.cfg.reranker_name or self.cfg.reranker)
        return ModelList(data=[ModelCard(id=n) for n in names])


def build(cfg: ServeConfig):
    """The Serve application for ``cfg``, with replicas, autoscaling and batching from it."""
    cfg = absolute_paths(cfg)
    models = cfg.model_args()
    # the index travels in user_config: a new one is swapped in by reconfigure, no restart
    retriever = None
    if not cfg.retriever_in_ingress:
        retriever = Retriever.options(**cfg.retriever.serve_options(),
                                      user_config=cfg.retriever_user_config()).bind(models)
    reranker = None
    if cfg.reranker:
        reranker = Reranker.options(**cfg.rerank.serve_options(), user_config=cfg.rerank.batching()).bind(models)
    return Ingress.options(**cfg.ingress_options()).bind(to_dict(cfg), retriever, reranker)


def absolute_paths(cfg: ServeConfig) -> ServeConfig:
    """Local paths relative to the builder's cwd: replicas run elsewhere (Ray's session folder)."""
    from dataclasses import replace
    from pathlib import Path

    from .artifacts import is_remote

    def fix(p: str | None) -> str | None:
        return p if p is None or is_remote(p) or not Path(p).expanduser().exists() else str(Path(p).expanduser().resolve())

    return replace(cfg, index=fix(cfg.index), corpus=fix(cfg.corpus), query_model=fix(cfg.query_model),
                   reranker=fix(cfg.reranker), reranker_name=cfg.reranker_name or cfg.reranker, auth=replace(cfg.auth, api_key_file=fix(cfg.auth.api_key_file)))


def build_app(args: dict):
    """Serve's application builder: ``import_path: rayrag.serve.app:build_app`` with ``args`` = ServeConfig."""
    return build(from_dict(ServeConfig, dict(args or {})))
