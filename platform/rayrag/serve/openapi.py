"""The OpenAPI document a deployment serves at /openapi.json: FastAPI's, completed for this deployment.

FastAPI knows the models but not this deployment: its limits (the config), whether it wants a key,
its model names, nor the answers the ingress gives besides 200 (its 400s stand in for FastAPI's
422, which never happens here). Clients and fuzzers (tests/test_serve.py runs schemathesis over
it) build requests from this document, so it states every limit JSON Schema can and lists each
error answer with its shape and headers. The rules JSON Schema cannot state are in descriptions
and answered 400: a chat history's structure and total length, and /v1/rerank on a deployment
without a reranker.
"""
from __future__ import annotations

import copy

from .admission import PROBES
from .config import ServeConfig
from .schemas import ErrorBody

NEEDS_MODELS = ("/search", "/v1/embeddings", "/v1/rerank", "/v1/models")  # 503 not_ready while loading
NAMES_A_MODEL = ("/v1/embeddings", "/v1/rerank")  # 404 model_not_found
BAD_INPUT = {  # the 400 codes of each route, besides pydantic's type codes (int_type, missing, extra_forbidden, ...)
    "/search": "empty, too_long, out_of_range, query_or_messages, invalid_conversation, no_reranker",
    "/v1/embeddings": "empty, too_long, too_many_inputs, unsupported_model, unsupported_dimensions",
    "/v1/rerank": "empty, too_long, out_of_range, no_reranker",
}
ERROR = {"$ref": "#/components/schemas/ErrorBody"}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "required": True,
                               "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
CHALLENGE = {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}}


def document(base: dict, cfg: ServeConfig, info: dict | None, auth: bool, root_path: str = "") -> dict:
    """``base`` (FastAPI's schema) for this deployment; ``info`` is the ready retriever's status, if it is."""
    doc = copy.deepcopy(base)  # FastAPI caches ``base``
    schemas = doc["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    error = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error.pop("$defs"), ErrorBody=error)
    _search(schemas, cfg)
    _embeddings(schemas, cfg, info)
    _rerank(schemas, cfg)
    for path, ops in doc["paths"].items():
        for op in ops.values():
            op["responses"] = {**op["responses"], **_errors(path, cfg, auth)}
            op["responses"].pop("422", None)
            if not auth or path == "/healthz":
                op.pop("security", None)
            elif path == "/readyz":  # anonymous probes get the status alone
                op["security"] = [{}, {"HTTPBearer": []}]
    if not auth:
        doc["components"].pop("securitySchemes", None)
    if root_path:
        doc["servers"] = [{"url": root_path}]
    return doc


def _answer(description: str, body: dict = ERROR, headers: dict | None = None) -> dict:
    out = {"description": description, "content": {"application/json": {"schema": body}}}
    return {**out, "headers": headers} if headers else out


def _errors(path: str, cfg: ServeConfig, auth: bool) -> dict:
    adm, out = cfg.admission, {}
    if path == "/readyz":
        out["503"] = _answer("not ready: a deployment is still loading or failed to load",
                             {"$ref": "#/components/schemas/Readiness"}, RETRY_AFTER)
    if auth and path != "/healthz":
        out["401"] = _answer("missing_api_key / invalid_api_key: send 'Authorization: Bearer <key>'"
                             + (" (or none: a wrong key is refused)" if path == "/readyz" else ""), headers=CHALLENGE)
    if path in PROBES:
        return out
    if path in BAD_INPUT:
        out["400"] = _answer(f"bad input; error.code is one of {BAD_INPUT[path]}, invalid_json, missing_body, "
                             f"invalid_unicode, or pydantic's type code, and error.param names the field")
    if path in NAMES_A_MODEL:
        out["404"] = _answer("model_not_found: model is not the one this deployment serves (see /v1/models)")
    out["408"] = _answer(f"body_timeout: the request body did not arrive within {adm.body_timeout_s:g} s")
    out["413"] = _answer(f"too_large: the request body is over {adm.body_limit(cfg.limits)} bytes")
    out["503"] = _answer(f"overloaded: this replica already serves {adm.max_concurrent_requests} requests"
                         + ("; or not_ready: still loading" if path in NEEDS_MODELS else ""), headers=RETRY_AFTER)
    return out


def _not_blank() -> str:
    """A regex for "holds a character ``str.strip()`` keeps", the ingress's test for empty text,
    spelled out: ``\\S`` differs between regex dialects (ECMA's keeps \\x1c-\\x1f, Python strips them)."""
    spaces = [c for c in range(0x10000) if chr(c).isspace()]  # all of them are in the BMP
    runs: list[list[int]] = []
    for c in spaces:
        if runs and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return "[^" + "".join(f"\\u{a:04x}" + (f"-\\u{b:04x}" if b > a else "") for a, b in runs) + "]"


NOT_BLANK = _not_blank()


def _text(limit: int) -> dict:
    """A string of 1 to ``limit`` characters, not all whitespace."""
    return {"type": "string", "minLength": 1, "maxLength": limit, "pattern": NOT_BLANK}


def _branch(prop: dict, kind: str) -> dict:
    """The ``kind`` alternative of an optional or union property (``anyOf: [{type: kind}, ...]``)."""
    return next(b for b in prop.get("anyOf", [prop]) if b.get("type") == kind)


def _search(schemas: dict, cfg: ServeConfig) -> None:
    lim, s = cfg.limits, schemas["SearchRequest"]
    p = s["properties"]
    _branch(p["query"], "string").update(_text(lim.max_query_chars))
    _branch(p["messages"], "array").update(minItems=1, maxItems=lim.max_messages)
    p["messages"]["description"] += (f". At most {lim.max_conversation_chars} characters in all, and the last "
                                     f"non-system message must be the user's, not empty (else 400)")
    schemas["ChatMessage"]["properties"]["content"]["maxLength"] = lim.max_message_chars
    _branch(p["k"], "integer").update(minimum=1, maximum=lim.max_k)
    _branch(p["rerank_k"], "integer").update(minimum=1, maximum=lim.max_rerank_k)
    _branch(p["rerank_interpolate"], "number").update(minimum=0, maximum=1)
    if not cfg.reranker:
        p["rerank"]["enum"] = [False]
    # exactly one of query and messages; rerank_interpolate only with rerank: true
    s["oneOf"] = [{"required": [f], "properties": {f: {"type": t}}} for f, t in (("query", "string"),
                                                                                ("messages", "array"))]
    s["if"] = {"required": ["rerank_interpolate"], "properties": {"rerank_interpolate": {"type": "number"}}}
    s["then"] = {"required": ["rerank"], "properties": {"rerank": {"const": True}}}


def _embeddings(schemas: dict, cfg: ServeConfig, info: dict | None) -> None:
    lim, p = cfg.limits, schemas["EmbeddingsRequest"]["properties"]
    _branch(p["input"], "string").update(_text(lim.max_input_chars))
    _branch(p["input"], "array").update(items=_text(lim.max_input_chars), minItems=1, maxItems=lim.max_embedding_inputs)
    if info is not None:
        p["model"]["enum"] = [info["model"]]
        if info["kind"] == "dense":
            _branch(p["dimensions"], "integer")["enum"] = [info["dim"]]
        else:
            p["model"]["description"] = "a sparse encoder: it has no dense embeddings (400 unsupported_model)"


def _rerank(schemas: dict, cfg: ServeConfig) -> None:
    lim, p = cfg.limits, schemas["RerankRequest"]["properties"]
    p["query"].update(_text(lim.max_query_chars))
    p["documents"].update(minItems=1, maxItems=lim.max_rerank_documents)
    _branch(p["documents"]["items"], "string").update(_text(lim.max_input_chars))
    schemas["RerankDocument"]["properties"]["text"].update(_text(lim.max_input_chars))
    _branch(p["top_n"], "integer").update(minimum=1, maximum=lim.max_rerank_documents)
    if cfg.reranker:
        _branch(p["model"], "string")["enum"] = [cfg.reranker_name or cfg.reranker]
    else:
        schemas["RerankRequest"]["description"] += " This deployment has no reranker: every call is 400 no_reranker."
