"""The Serve application on a real local Ray, over real HTTP on 127.0.0.1.

One Ray instance for the module with four applications: ``open`` (no key, with a reranker, an
autoscaling retriever and an admission limit of 40 requests) at ``/``, ``secure`` (bearer key from
an environment variable) at ``/secure``, ``student`` (a SPLADE index searched with a conversational
query encoder, for ``messages``) at ``/student`` and ``reason`` (an LREM reasoning embedder's index,
reasoning auto) at ``/reason``. Models are a 1-layer BERT (``tiny_bert``) and a 2-layer Llama (``tiny_llama``) over 120
SciFact abstracts, so results are compared exactly against the library computing the same thing
in this process. The open and secure apps are also fuzzed from their own OpenAPI documents.
"""
import asyncio
import base64
import json
import shutil
import socket
from collections import Counter

import httpx
import numpy as np
import pytest

from tests.conftest import free_port
from tests.serve_fixtures import (make_corpus, make_index, make_reasoning_model, make_reranker, make_sharded_index,
                                  make_sparse_index)

KEY = "s3cret-test-key"
KEY_ENV = "RAYRAG_TEST_SERVE_KEY"
LIMITS = {"max_query_chars": 200, "max_k": 20, "max_rerank_k": 10, "max_embedding_inputs": 4,
          "max_input_chars": 300, "max_rerank_documents": 5, "max_messages": 6, "max_message_chars": 400,
          "max_conversation_chars": 1000}
STUDENT_TOKENS = 40  # small enough that the longer test histories lose their oldest turns
SMALL = {"num_cpus": 0.2}
# the open app's: a slow body is given long enough that the overload test's 3x-limit burst all
# arrives while the slow clients still hold every slot, even on a loaded 2-core machine
ADMISSION = {"max_concurrent_requests": 40, "body_timeout_s": 15.0}


def _cfg(index, **kw):
    from rayrag.config import from_dict
    from rayrag.serve.config import ServeConfig

    base = {"index": str(index), "limits": LIMITS, "load_retry_s": 1.0, "default_rerank_k": 8, "auth": {"api_key_env": None},
            "ingress": {"num_cpus": 0.1}, "retriever": SMALL, "rerank": SMALL}
    return from_dict(ServeConfig, {**base, **kw})


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, data_dir, tiny_bert, tiny_llama):
    root = tmp_path_factory.mktemp("serve")
    corpus = make_corpus(data_dir, root)
    lrem = make_reasoning_model(tiny_llama, root / "lrem")
    return {"model": tiny_bert, "corpus": corpus, "index": make_index(tiny_bert, corpus, root / "index"),
            "reranker": make_reranker(tiny_bert, root / "reranker", corpus), "root": root,
            "sparse_index": make_sparse_index(tiny_bert, corpus, root / "sparse-index"),
            "lrem_index": make_index(lrem, corpus, root / "lrem-index")}


REASON = {"reasoning": "auto", "reasoning_margin": 0.05}


def _reason_cfg(artifacts):
    return _cfg(artifacts["lrem_index"], **REASON)


def _student_cfg(artifacts):
    # tiny_bert stands in for a trained DiSCo student: query_model overrides the index's encoder
    return _cfg(artifacts["sparse_index"], query_model=str(artifacts["model"]), max_query_tokens=STUDENT_TOKENS)


def _init_ray(attempts: int = 3):
    """Ray waits a fixed 30 s for its raylet; on a machine shared with training runs that is not
    always enough, so a start that timed out is retried."""
    import ray

    from rayrag.ray_utils import start_local_ray

    for i in range(attempts):
        try:
            return start_local_ray(num_cpus=2)
        except Exception as e:
            if "timed out during startup" not in str(e) or i == attempts - 1:
                raise
            ray.shutdown()


@pytest.fixture(scope="module")
def server(artifacts):
    import ray
    from ray import serve

    from rayrag.serve.app import build
    from rayrag.serve.local import wait_ready

    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, KEY)  # replicas inherit the environment Ray starts with
    mp.setenv("RAYRAG_HOME", str(artifacts["root"] / "home"))
    # Serve gives its HTTP proxy 5 s to report ready and then replaces it; a 2-core machine
    # shared with training runs can take longer than that. Tolerance only: no result changes.
    for name in ("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S"):
        mp.setenv(name, "60")
    _init_ray()
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        url = f"http://127.0.0.1:{port}"
        open_cfg = _cfg(artifacts["index"], reranker=str(artifacts["reranker"]), reranker_name="tiny-reranker",
                        model_name="tiny-embed", admission=ADMISSION,
                        retriever={**SMALL, "autoscaling": {"min_replicas": 1, "max_replicas": 2}})
        # one call deploys all four, so their replicas start together (alone: 33-38 s of set-up
        # against 40-42 s for four serve.run calls, each waiting for its app to run)
        serve.run_many([
            serve.RunTarget(build(open_cfg), name="open", route_prefix="/"),
            serve.RunTarget(build(_cfg(artifacts["index"], auth={"api_key_env": KEY_ENV})), name="secure",
                            route_prefix="/secure"),
            serve.RunTarget(build(_student_cfg(artifacts)), name="student", route_prefix="/student"),
            serve.RunTarget(build(_reason_cfg(artifacts)), name="reason", route_prefix="/reason")])
        wait_ready(url, 300)
        wait_ready(f"{url}/reason", 300)
        wait_ready(f"{url}/secure", 300)
        wait_ready(f"{url}/student", 300)
        yield {"url": url, "client": httpx.Client(base_url=url, timeout=60)}
    finally:
        serve.shutdown()
        ray.shutdown()
        mp.undo()


@pytest.fixture(scope="module")
def library(artifacts):
    """The same computations in this process: the reference the server must match."""
    from rayrag.serve.config import ServeConfig
    from rayrag.serve.engine import SearchEngine
    from rayrag.models.reranker import load_reranker

    return {"engine": SearchEngine(ServeConfig(index=str(artifacts["index"]))),
            "student": SearchEngine(_student_cfg(artifacts)),
            "reason": SearchEngine(_reason_cfg(artifacts)),
            "reranker": load_reranker(str(artifacts["reranker"]), max_length=128)}  # tiny_bert's positions


def _post(server, path, body, **kw):
    return server["client"].post(path, json=body, **kw)


def test_health_readiness_and_openapi(server):
    c = server["client"]
    assert c.get("/healthz").json() == {"status": "ok"}
    ready = c.get("/readyz").json()
    assert ready["status"] == "ready" and ready["retriever"]["count"] == 120 and ready["reranker"]["ready"]
    # each batcher's counts (serve/batching.py), for an operator to see the batches load forms
    assert set(ready["retriever"]["batching"]) == {"search", "embed"}
    assert set(ready["reranker"]["batching"]["score"]) == {"batches", "requests", "mean_batch_size"}
    schema = c.get("/openapi.json").json()
    assert {"/search", "/v1/embeddings", "/v1/rerank", "/healthz", "/readyz"} <= set(schema["paths"])
    assert c.get("/docs").status_code == 200
    # the bench's no-model route exists only where RAYRAG_BENCH_ROUTES=1 (bench/serve_cost.py)
    assert "/bench/noop-search" not in schema["paths"]
    assert c.post("/bench/noop-search", json={"query": "x"}).status_code == 404
    # the schema is this deployment's: its limits, its model, no key, and the errors it really answers
    request = schema["components"]["schemas"]["SearchRequest"]["properties"]
    assert {"type": "string", "maxLength": LIMITS["max_query_chars"]}.items() <= request["query"]["anyOf"][0].items()
    assert schema["components"]["schemas"]["EmbeddingsRequest"]["properties"]["model"]["enum"] == ["tiny-embed"]
    search = schema["paths"]["/search"]["post"]
    assert set(search["responses"]) == {"200", "400", "408", "413", "503"} and "security" not in search
    assert search["responses"]["503"]["headers"]["Retry-After"]["required"]
    secure = httpx.get(f"{server['url']}/secure/openapi.json", timeout=60).json()
    assert secure["servers"] == [{"url": "/secure"}]
    assert {"401", "503"} <= set(secure["paths"]["/v1/models"]["get"]["responses"])
    assert secure["paths"]["/readyz"]["get"]["security"] == [{}, {"HTTPBearer": []}]  # the key is optional there


def test_search_matches_library_and_carries_text(server, library, artifacts):
    query = "vitamin D and bone density"
    r = _post(server, "/search", {"query": query, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = library["engine"].search([query], 7)[0]
    assert [h["id"] for h in body["results"]] == [d for d, _ in expected]
    assert np.allclose([h["score"] for h in body["results"]], [s for _, s in expected], atol=1e-5)
    passages = library["engine"].passages
    for i, h in enumerate(body["results"]):
        assert h["rank"] == i + 1 and h["stage"] == "retriever" and h["retriever_score"] == h["score"]
        assert (h["title"], h["text"]) == (passages[h["id"]].title, passages[h["id"]].text)
    assert body["model"] == "tiny-embed" and body["reranked"] is False


def test_rerank_orders_by_reranker_scores(server, library):
    query = "smoking increases the risk of cancer"
    retrieved = library["engine"].search([query], 8)[0]
    passages = library["engine"].passages
    docs = [passages[d].full_text for d, _ in retrieved]
    scores = library["reranker"].score(query, docs)
    expected = [retrieved[i][0] for i in np.argsort(-scores, kind="stable")][:5]
    assert expected != [d for d, _ in retrieved[:5]], "pick a query whose reranked order differs"

    body = _post(server, "/search", {"query": query, "k": 5, "rerank": True, "rerank_k": 8}).json()
    assert [h["id"] for h in body["results"]] == expected
    by_id = dict(zip([d for d, _ in retrieved], scores))
    retr = dict(retrieved)
    for h in body["results"]:
        assert h["stage"] == "reranker" and h["score"] == pytest.approx(float(by_id[h["id"]]), abs=1e-4)
        assert h["retriever_score"] == pytest.approx(retr[h["id"]], abs=1e-5)
    assert body["reranked"] and body["reranker"] == "tiny-reranker"


def test_rerank_interpolated_with_the_retriever_as_evaluate_does(server, library):
    from rayrag.search.rerank import interpolate

    query = "smoking increases the risk of cancer"
    retrieved = library["engine"].search([query], 8)[0]
    passages = library["engine"].passages
    scores = library["reranker"].score(query, [passages[d].full_text for d, _ in retrieved])
    reranked = sorted(zip([d for d, _ in retrieved], map(float, scores)), key=lambda x: -x[1])
    expected = interpolate({"q": retrieved}, {"q": reranked}, depth=8, weight=0.3)["q"][:5]

    body = _post(server, "/search", {"query": query, "k": 5, "rerank": True, "rerank_k": 8,
                                     "rerank_interpolate": 0.3}).json()
    assert [h["id"] for h in body["results"]] == [d for d, _ in expected]
    assert [h["score"] for h in body["results"]] == pytest.approx([s for _, s in expected], abs=1e-4)
    assert {h["stage"] for h in body["results"]} == {"interpolated"}


def test_rerank_endpoint_cohere_shape(server, library):
    docs = ["Vitamin D deficiency weakens bones.", {"text": "The stock market fell."}, "Bone density and calcium."]
    texts = [d if isinstance(d, str) else d["text"] for d in docs]
    r = _post(server, "/v1/rerank", {"model": "tiny-reranker", "query": "bone health", "documents": docs,
                                     "top_n": 2, "return_documents": True})
    assert r.status_code == 200, r.text
    scores = library["reranker"].score("bone health", texts)
    order = list(np.argsort(-scores, kind="stable")[:2])
    results = r.json()["results"]
    assert [x["index"] for x in results] == order
    assert [x["relevance_score"] for x in results] == pytest.approx([float(scores[i]) for i in order], abs=1e-4)
    assert [x["document"]["text"] for x in results] == [texts[i] for i in order]
    plain = _post(server, "/v1/rerank", {"query": "bone health", "documents": texts}).json()["results"]
    assert len(plain) == 3 and all("document" not in x for x in plain)


def test_openai_client_embeddings_equal_library(server, library):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server['url']}/v1", api_key="unused-when-auth-is-off")
    texts = ["What causes vitamin D deficiency?", "aspirin", "Does smoking cause lung cancer in non-smokers?"]
    expected = library["engine"].encoder.encode_queries(texts, progress=False)
    # unset: the client asks for base64 and decodes it itself; "float": plain JSON numbers
    for kw in ({}, {"encoding_format": "float"}):
        resp = client.embeddings.create(model="tiny-embed", input=texts, **kw)
        got = np.array([d.embedding for d in sorted(resp.data, key=lambda d: d.index)], dtype=np.float32)
        assert np.allclose(got, expected, atol=1e-5), kw
        assert resp.usage.prompt_tokens == sum(library["engine"].count_tokens(texts)) == resp.usage.total_tokens
    one = client.embeddings.create(model="tiny-embed", input=texts[1])
    assert np.allclose(one.data[0].embedding, expected[1], atol=1e-5)
    raw = _post(server, "/v1/embeddings", {"model": "tiny-embed", "input": "aspirin", "encoding_format": "base64"})
    vec = np.frombuffer(base64.b64decode(raw.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(vec, expected[1], atol=1e-5)


def test_concurrent_requests_are_batched_correctly(server, library):
    """16 concurrent queries with different k: each gets its own answer out of the shared batches."""
    from concurrent.futures import ThreadPoolExecutor

    queries = [f"protein {w} in cells" for w in ("folding", "binding", "signalling", "expression")] * 4
    ks = [1 + i % 6 for i in range(len(queries))]
    with ThreadPoolExecutor(16) as pool:
        bodies = list(pool.map(lambda qk: httpx.post(f"{server['url']}/search", json={"query": qk[0], "k": qk[1]},
                                                     timeout=60).json(), zip(queries, ks)))
    for q, k, body in zip(queries, ks, bodies):
        assert [h["id"] for h in body["results"]] == [d for d, _ in library["engine"].search([q], k)[0]]


HISTORY = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What does vitamin D do for bones?"},
    {"role": "assistant", "content": "It helps the body absorb calcium,\nwhich keeps bones dense."},
    {"role": "user", "content": "Is there a link between low levels and fractures in older adults?"},
    {"role": "assistant", "content": "Several cohort studies report one."},
    {"role": "user", "content": "And what about supplements, do they reduce that risk?"},
]


def test_messages_search_with_the_student_equals_the_library(server, library):
    """The student's ranking for a chat history is the library's for the same formatted history."""
    from rayrag.data.conversation import format_messages

    engine = library["student"]
    formatted = format_messages(HISTORY, engine.encoder.tokenizer, STUDENT_TOKENS)
    assert formatted.startswith("|user|: Is there a link") and "|agent|" not in formatted  # oldest turn cut
    assert formatted == engine.format_conversation([("user", m["content"]) if m["role"] == "user" else
                                                    ("agent", m["content"]) for m in HISTORY[1:]])
    r = _post(server, "/student/search", {"messages": HISTORY, "k": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == formatted  # what was searched, so clients can see it
    expected = engine.search([formatted], 6)[0]
    assert len(expected) == 6
    assert [h["id"] for h in body["results"]] == [d for d, _ in expected]
    assert np.allclose([h["score"] for h in body["results"]], [s for _, s in expected], atol=1e-4)
    # a one-turn history searches exactly that turn, as `query` would with the same encoder
    one = _post(server, "/student/search", {"messages": [HISTORY[-1]], "k": 3}).json()
    assert one["query"] == "|user|: " + HISTORY[-1]["content"]
    assert [h["id"] for h in one["results"]] == [d for d, _ in engine.search([one["query"]], 3)[0]]


def test_reasoning_index_searches_and_embeds_as_the_library(server, library):
    """An LREM index served with reasoning auto: each query is routed (reason-then-embed or
    direct) and ranked as the library does; concurrent requests share batched generation; the
    replica reports its routed share."""
    from concurrent.futures import ThreadPoolExecutor

    engine = library["reason"]
    queries = ["vitamin D and bone density", "aspirin", "do cells fold proteins", "stem cells in the brain"]
    for q in queries:
        r = _post(server, "/reason/search", {"query": q, "k": 5})
        assert r.status_code == 200, r.text
        expected = engine.search([q], 5)[0]
        assert [h["id"] for h in r.json()["results"]] == [d for d, _ in expected]
        assert np.allclose([h["score"] for h in r.json()["results"]], [s for _, s in expected], atol=1e-4)
    emb = _post(server, "/reason/v1/embeddings", {"input": queries[:2], "model": engine.model_name}).json()
    assert np.allclose([d["embedding"] for d in emb["data"]], engine.embed(queries[:2])[0], atol=1e-4)
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda q: _post(server, "/reason/search", {"query": q, "k": 3}), queries * 3))
    assert all(b.status_code == 200 and len(b.json()["results"]) == 3 for b in bodies)
    engine.search(queries * 3, 3)  # the library has now routed the same queries as the replica
    ready = server["client"].get("/reason/readyz").json()["retriever"]
    assert ready["reasoning"]["mode"] == "auto"
    assert 0 < engine.stats["routed_share"] < 1  # both paths ran: these queries reason, those embed directly
    assert ready["reasoning"]["routed_share"] == pytest.approx(engine.stats["routed_share"])


def test_reasoning_is_refused_where_the_index_cannot_reason(artifacts):
    from rayrag.errors import ConfigError, DataError
    from rayrag.serve.engine import SearchEngine

    with pytest.raises(DataError, match="not a reasoning embedder"):
        SearchEngine(_cfg(artifacts["index"], reasoning="on"))
    with pytest.raises(DataError, match="sparse index"):
        SearchEngine(_cfg(artifacts["sparse_index"], reasoning="off"))
    with pytest.raises(ConfigError, match="reasoning must be on, off or auto"):
        _cfg(artifacts["lrem_index"], reasoning="sometimes")
    with pytest.raises(ConfigError, match="reasoning_margin"):
        _cfg(artifacts["lrem_index"], reasoning_margin=-1)


def test_messages_work_on_a_dense_index_too(server, library):
    """The plumbing does not depend on the index kind: the dense app formats and searches the same way."""
    from rayrag.data.conversation import format_messages

    engine = library["engine"]
    body = _post(server, "/search", {"messages": HISTORY[1:4], "k": 4}).json()
    formatted = format_messages(HISTORY[1:4], engine.encoder.tokenizer, engine.encoder.max_length)
    assert body["query"] == formatted
    assert [h["id"] for h in body["results"]] == [d for d, _ in engine.search([formatted], 4)[0]]


_U = {"role": "user", "content": "ok"}
BAD = [
    ("/search", {"messages": []}, 400, "messages"),
    ("/search", {"messages": "hi"}, 400, "messages"),
    ("/search", {"messages": [{"role": "assistant", "content": "hello"}]}, 400, "messages"),
    ("/search", {"messages": [_U, {"role": "assistant", "content": "hello"}]}, 400, "messages"),
    ("/search", {"messages": [{"role": "system", "content": "be brief"}]}, 400, "messages"),
    ("/search", {"messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role"),
    ("/search", {"messages": [_U, {"role": "user", "content": 5}]}, 400, "messages[1].content"),
    ("/search", {"messages": [{"role": "user"}]}, 400, "messages[0].content"),
    ("/search", {"messages": [{"role": "user", "content": "x", "mood": "curious"}]}, 400, "messages[0].mood"),
    ("/search", {"messages": [{"role": "user", "content": " \n "}]}, 400, "messages"),
    ("/search", {"messages": [_U] * 7}, 400, "messages"),
    ("/search", {"messages": [_U, {"role": "user", "content": "y" * 401}]}, 400, "messages[1].content"),
    ("/search", {"messages": [{"role": "user", "content": "y" * 400}] * 3}, 400, "messages"),
    ("/search", {"query": "ok", "messages": [_U]}, 400, "messages"),
    ("/search", {"query": ""}, 400, "query"),
    ("/search", {"query": "   \n\t"}, 400, "query"),
    ("/search", {"query": "x" * 201}, 400, "query"),
    ("/search", {"query": "ok", "k": 0}, 400, "k"),
    ("/search", {"query": "ok", "k": 21}, 400, "k"),
    ("/search", {"query": "ok", "k": -3}, 400, "k"),
    ("/search", {"query": "ok", "rerank": True, "rerank_k": 11}, 400, "rerank_k"),
    ("/search", {"query": "ok", "rerank": True, "rerank_interpolate": 1.5}, 400, "rerank_interpolate"),
    ("/search", {"query": "ok", "rerank_interpolate": 0.5}, 400, "rerank_interpolate"),
    ("/search", {"query": "ok", "k": "5"}, 400, "k"),
    ("/search", {"query": "ok", "k": 2.5}, 400, "k"),
    ("/search", {"query": 42}, 400, "query"),
    ("/search", {"query": ["a", "b"]}, 400, "query"),
    ("/search", {"query": "ok", "rerank": "yes"}, 400, "rerank"),
    ("/search", {"query": "ok", "top_k": 3}, 400, "top_k"),
    ("/search", {}, 400, "query"),
    ("/search", ["query"], 400, None),
    ("/search", b'{"query": "unterminated', 400, None),
    ("/search", b"", 400, None),
    # lone UTF-16 surrogates are not text: they were 500s that failed their whole batch
    ("/search", b'{"query": "cells \\ud800"}', 400, "query"),
    ("/search", b'{"messages": [{"role": "user", "content": "\\udfff"}]}', 400, "messages[0].content"),
    ("/v1/embeddings", b'{"model": "tiny-embed", "input": ["ok", "\\ud83d"]}', 400, "input[1]"),
    ("/v1/rerank", b'{"query": "q", "documents": [{"text": "\\udc00 x"}]}', 400, "documents[0]"),
    ("/v1/embeddings", {"model": "tiny-embed", "input": ["a"] * 5}, 400, "input"),
    ("/v1/embeddings", {"model": "tiny-embed", "input": []}, 400, "input"),
    ("/v1/embeddings", {"model": "tiny-embed", "input": ["fine", " "]}, 400, "input[1]"),
    ("/v1/embeddings", {"model": "tiny-embed", "input": "y" * 301}, 400, "input"),
    ("/v1/embeddings", {"model": "tiny-embed", "input": [[101, 2023]]}, 400, None),
    ("/v1/embeddings", {"model": "tiny-embed", "input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
    ("/v1/embeddings", {"model": "tiny-embed", "input": "a", "dimensions": 7}, 400, "dimensions"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "a"}, 404, "model"),
    ("/v1/embeddings", {"input": "a"}, 400, "model"),
    ("/v1/rerank", {"model": "rerank-english-v3.0", "query": "q", "documents": ["a"]}, 404, "model"),
    ("/v1/rerank", {"query": "q", "documents": []}, 400, "documents"),
    ("/v1/rerank", {"query": "q", "documents": ["d"] * 6}, 400, "documents"),
    ("/v1/rerank", {"query": " ", "documents": ["a"]}, 400, "query"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, 400, "top_n"),
    ("/v1/rerank", {"query": "q", "documents": [{"txt": "a"}]}, 400, None),
]


@pytest.mark.parametrize("path, body, status, param", BAD, ids=[f"{p}-{i}" for i, (p, *_) in enumerate(BAD)])
def test_bad_input_is_a_clear_4xx(server, path, body, status, param):
    c = server["client"]
    if isinstance(body, bytes):
        r = c.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = c.post(path, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param, err
    # and the server keeps serving
    assert c.post("/search", json={"query": "cells", "k": 2}).status_code == 200


def test_unknown_routes_and_methods_use_the_error_shape(server):
    c = server["client"]
    r = c.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = c.get("/search")
    assert r.status_code == 405 and "error" in r.json()


def test_integral_numbers_are_integers(server):
    """JSON has one number type and JSON Schema calls 2.0 an integer; the fuzz found 2.0 refused."""
    r = _post(server, "/search", {"query": "cells", "k": 2.0})
    assert r.status_code == 200 and len(r.json()["results"]) == 2, r.text
    r = _post(server, "/v1/rerank", {"query": "cells", "documents": ["a cell", "a rock", "a cat"], "top_n": 2.0})
    assert r.status_code == 200 and len(r.json()["results"]) == 2, r.text


# app -> (route prefix, key, examples per operation and mode): the POST operations alone take
# (100 + 50 + 20) x 3 operations x 2 modes = 1,020 requests; the GETs add some 150 more
FUZZ = {"open": ("", None, 100), "secure-with-key": ("/secure", KEY, 50), "secure-anonymous": ("/secure", None, 20)}


@pytest.mark.parametrize("app", FUZZ)
def test_fuzzed_requests_get_documented_answers_and_no_5xx(server, app):
    """schemathesis generates requests from the app's own /openapi.json (tests/serve_fuzz.py);
    every answer must be documented there, in status, headers and body, and none a 5xx."""
    from tests.serve_fuzz import fuzz

    prefix, key, examples = FUZZ[app]
    url = server["url"] + prefix
    seen, failures = fuzz(url, examples, {"Authorization": f"Bearer {key}"} if key else None)
    by_status = Counter()
    for (_, _, status), n in seen.items():
        by_status[status] += n
    print(f"\nfuzz {app}: {sum(seen.values())} requests, statuses {dict(sorted(by_status.items()))}")
    assert not failures, "\n\n".join(failures)
    assert not [s for s in by_status if s >= 500]
    per_op = Counter()
    for (op, mode, _), n in seen.items():
        per_op[op, mode] += n
    assert {op for op, _ in per_op} == {"GET /healthz", "GET /readyz", "GET /v1/models", "POST /search",
                                        "POST /v1/embeddings", "POST /v1/rerank"}
    assert all(n == examples for (op, _), n in per_op.items() if op.startswith("POST")), per_op
    assert len(per_op) == 9  # a negative run for each operation with a body
    assert httpx.get(f"{url}/healthz", timeout=60).status_code == 200  # alive after it
    r = httpx.post(f"{url}/search", json={"query": "cells"}, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert r.status_code == 200 and r.json()["results"]


def _slow_client(url: str) -> socket.socket:
    """A client that sends its headers and part of its body, then nothing more."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(f"POST /search HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: 100\r\n\r\n{{\"query\": ".encode())
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the one answer on ``sock`` (the server closes it after a 408)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def _burst(url: str, n: int) -> list[tuple[httpx.Response, float]]:
    """``n`` searches sent at once, each with its own connection; (answer, seconds it took)."""
    import time

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=None)) as client:
        async def one():
            t0 = time.monotonic()
            r = await client.post("/search", json={"query": "cells", "k": 3})
            return r, time.monotonic() - t0

        return await asyncio.gather(*[one() for _ in range(n)])


def test_overload_is_refused_at_once_with_retry_after(server):
    """4x the admission limit at once: slow clients hold every slot (their bodies never finish) and
    3x the limit searches all get 503 overloaded with Retry-After at once, not a queue or a 5xx;
    the slow clients get 408 when their time is up, and the server serves again."""
    import time

    limit = ADMISSION["max_concurrent_requests"]
    slow = [_slow_client(server["url"]) for _ in range(limit)]
    try:
        time.sleep(2)  # let them all reach the ingress before anything else does
        r = _post(server, "/search", {"query": "cells", "k": 1})
        assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded", r.text  # full
        burst = asyncio.run(_burst(server["url"], 3 * limit))
        statuses = Counter(r.status_code for r, _ in burst)
        print(f"\noverload: limit {limit}, {limit} slow + {3 * limit} burst, burst statuses {dict(statuses)}, "
              f"slowest answer {max(t for _, t in burst):.2f}s")
        assert statuses == {503: 3 * limit}
        for r, seconds in burst:
            assert r.headers["retry-after"] == "1" and seconds < ADMISSION["body_timeout_s"]
            assert r.json()["error"] == {"message": r.json()["error"]["message"], "type": "service_unavailable",
                                         "param": None, "code": "overloaded"}
        answers = [_answer(sock) for sock in slow]
        assert {status for status, _ in answers} == {408}
        assert {body["error"]["code"] for _, body in answers} == {"body_timeout"}
    finally:
        for sock in slow:
            sock.close()
    assert server["client"].get("/healthz").status_code == 200
    assert _post(server, "/search", {"query": "cells", "k": 2}).status_code == 200


def test_oversize_bodies_are_refused_with_413(server):
    """Past the body limit (derived from the limits: the largest valid body, \\u-escaped) a body is
    refused by its Content-Length before it is read, or once a chunked one passes the limit."""
    from rayrag.serve.config import Limits

    c, limit = server["client"], Limits(**LIMITS).largest_body_bytes()
    r = c.post("/search", content=b" " * (limit + 1), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large", r.text
    chunks = (b" " * 4096 for _ in range(limit // 4096 + 2))  # a generator: sent chunked, no Content-Length
    r = c.post("/v1/embeddings", content=chunks, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error", r.text
    # just under the limit the body is read and judged on its content
    r = c.post("/search", json={"query": "x" * (limit - 100)})
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_long"
    assert _post(server, "/search", {"query": "cells", "k": 2}).status_code == 200


def test_auth_on(server):
    from openai import AuthenticationError, OpenAI

    url = f"{server['url']}/secure"
    assert httpx.get(f"{url}/healthz", timeout=60).status_code == 200  # probes need no key
    r = httpx.post(f"{url}/search", json={"query": "cells"}, timeout=60)
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    assert r.headers["www-authenticate"] == "Bearer"
    # the key is checked before the body: a keyless call with a bad body learns of the key first
    for path, body in (("/search", {"query": "cells", "k": "many"}), ("/v1/embeddings", {"input": 5}),
                       ("/v1/rerank", {"query": "q"})):
        r = httpx.post(f"{url}{path}", json=body, timeout=60)
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key", (path, r.text)
    r = httpx.post(f"{url}/search", json={"query": "cells", "k": "many"}, headers={"Authorization": f"Bearer {KEY}"},
                   timeout=60)
    assert r.status_code == 400, r.text  # with the key, the body's own error
    for bad in ("Bearer wrong", f"Bearer {KEY}x", f"Basic {KEY}", KEY):
        r = httpx.post(f"{url}/search", json={"query": "cells"}, headers={"Authorization": bad}, timeout=60)
        assert r.status_code == 401, bad
    r = httpx.post(f"{url}/search", json={"query": "cells", "k": 3}, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert r.status_code == 200 and len(r.json()["results"]) == 3
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{url}/v1", api_key="wrong").embeddings.create(model="x", input="a")
    ok = OpenAI(base_url=f"{url}/v1", api_key=KEY).models.list()
    assert [m.id for m in ok.data] == [_index_model(url)]  # no reranker in this app


def _index_model(url):
    return httpx.get(f"{url}/readyz", headers={"Authorization": f"Bearer {KEY}"}, timeout=60).json()["retriever"]["model"]


def test_readiness_details_only_for_authenticated_callers(server):
    url = f"{server['url']}/secure"
    anonymous = httpx.get(f"{url}/readyz", timeout=60)
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ready"}  # no names, no paths
    authed = httpx.get(f"{url}/readyz", headers={"Authorization": f"Bearer {KEY}"}, timeout=60).json()
    assert authed["status"] == "ready" and authed["retriever"]["count"] == 120
    r = httpx.get(f"{url}/readyz", headers={"Authorization": "Bearer wrong"}, timeout=60)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_keys_never_reach_the_logs(server):
    """After right and wrong keys were sent, no Ray log file (proxy, replicas, controller) holds either."""
    import ray

    url = f"{server['url']}/secure"
    wrong = "wrong-" + KEY[::-1]
    for key in (KEY, wrong):
        httpx.post(f"{url}/search", json={"query": "cells", "k": 1}, headers={"Authorization": f"Bearer {key}"},
                   timeout=60)
    from pathlib import Path

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    files = [f for f in logs.rglob("*") if f.is_file()]
    assert any("proxy" in f.name for f in files) and any("Ingress" in f.name for f in files)
    leaked = [f.name for f in files if KEY.encode() in f.read_bytes() or wrong.encode() in f.read_bytes()]
    assert not leaked, leaked


def test_a_reranker_without_trained_weights_is_refused_at_once(server, artifacts):
    """tiny_bert has no classification head: the replica says so for good, and wait_ready stops."""
    import time

    from ray import serve

    from rayrag.errors import DataError
    from rayrag.serve.app import build
    from rayrag.serve.local import wait_ready

    serve.run(build(_cfg(artifacts["index"], reranker=str(artifacts["model"]), load_retry_s=1.0)),
              name="standin", route_prefix="/standin")
    url = f"{server['url']}/standin"
    try:
        t0 = time.monotonic()
        with pytest.raises(DataError, match="no trained scoring head"):
            wait_ready(url, 120)
        assert time.monotonic() - t0 < 60  # not the readiness timeout
        r = httpx.get(f"{url}/readyz", timeout=60)
        assert r.status_code == 503 and r.json()["reranker"]["permanent"]
    finally:
        serve.delete("standin")


def test_auth_off_needs_no_key(server):
    r = server["client"].post("/search", json={"query": "cells", "k": 1})
    assert r.status_code == 200
    assert server["client"].get("/v1/models").json()["data"][1]["id"] == "tiny-reranker"


def test_readiness_fails_until_the_index_exists(server, artifacts, tmp_path):
    """A replica whose index is not there yet is live but not ready, says why, and recovers."""
    from ray import serve

    from rayrag.serve.app import build
    from rayrag.serve.local import wait_ready

    late = tmp_path / "late-index"
    serve.run(build(_cfg(late, corpus=str(artifacts["corpus"]))), name="late", route_prefix="/late")
    url = f"{server['url']}/late"
    try:
        assert httpx.get(f"{url}/healthz", timeout=60).status_code == 200
        r = httpx.get(f"{url}/readyz", timeout=60)
        assert r.status_code == 503 and "no such file" in r.json()["retriever"]["error"]
        r = httpx.post(f"{url}/search", json={"query": "cells"}, timeout=60)
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        shutil.copytree(artifacts["index"], late)
        wait_ready(url, 60)
        assert httpx.post(f"{url}/search", json={"query": "cells", "k": 2}, timeout=60).status_code == 200
    finally:
        serve.delete("late")


@pytest.mark.parametrize("where", ["in the replica", "on shard actors"])
def test_a_sharded_index_serves_what_one_index_serves(server, artifacts, data_dir, where):
    """The same vectors as the open app's index in 3 shards (passages memory-mapped beside them),
    searched by the retriever replica itself or by one Ray actor per shard: /search gives the
    same ids, scores and texts; readiness reports shards and replica memory."""
    from ray import serve

    from rayrag.data.beir import load_queries
    from rayrag.serve.app import build
    from rayrag.serve.local import wait_ready

    sharded = artifacts["root"] / "sharded"
    if not sharded.exists():
        make_sharded_index(artifacts["model"], artifacts["corpus"], sharded, 3)
    actors = {"shard_actor_cpus": 0.01} if where == "on shard actors" else {}
    serve.run(build(_cfg(sharded, model_name="tiny-embed", **actors)), name="sharded", route_prefix="/sharded")
    url = f"{server['url']}/sharded"
    try:
        wait_ready(url, 300)
        queries = list(load_queries(data_dir / "scifact" / "queries.jsonl").values())[:25]
        for q in queries:
            one = _post(server, "/search", {"query": q, "k": 10})
            three = httpx.post(f"{url}/search", json={"query": q, "k": 10}, timeout=60)
            assert one.status_code == three.status_code == 200
            a, b = one.json()["results"], three.json()["results"]
            assert [r["id"] for r in a] == [r["id"] for r in b]
            assert np.allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-5)
            assert [(r["title"], r["text"]) for r in a] == [(r["title"], r["text"]) for r in b]
        ready = {name: httpx.get(f"{u}/readyz", timeout=60).json()["retriever"]
                 for name, u in (("one", server["url"]), ("sharded", url))}
        assert ready["sharded"]["shards"] == 3 and ready["one"]["shards"] == 1
        assert ready["sharded"]["shard_actors"] == (where == "on shard actors") and not ready["one"]["shard_actors"]
        assert ready["sharded"]["count"] == ready["one"]["count"] == 120
        assert 0 < ready["sharded"]["private_mb"] <= ready["sharded"]["rss_mb"]
        print(f"replica private memory: one index {ready['one']['private_mb']} MB, "
              f"3 shards {where} {ready['sharded']['private_mb']} MB")
    finally:
        serve.delete("sharded")


def test_the_retriever_inside_the_ingress_answers_as_its_own_deployment_does(server, library, artifacts):
    """retriever_in_ingress: one deployment (the Ingress) holds encoder and index, loaded through
    its own reconfigure; /search (with rerank), /v1/embeddings, readiness and a bad input's 400
    are what the open app, whose Retriever is a deployment of its own, gives."""
    from ray import serve

    from rayrag.serve.app import build
    from rayrag.serve.local import wait_ready

    cfg = _cfg(artifacts["index"], reranker=str(artifacts["reranker"]), reranker_name="tiny-reranker",
               model_name="tiny-embed", retriever_in_ingress=True)
    serve.run(build(cfg), name="inside", route_prefix="/inside")
    url = f"{server['url']}/inside"
    try:
        wait_ready(url, 300)
        assert set(serve.status().applications["inside"].deployments) == {"Ingress", "Reranker"}
        for body in ({"query": "vitamin D and bone density", "k": 7},
                     {"query": "smoking increases the risk of cancer", "k": 5, "rerank": True, "rerank_k": 8},
                     {"messages": [{"role": "user", "content": "aspirin and heart attacks"}], "k": 3}):
            one, inside = _post(server, "/search", body), httpx.post(f"{url}/search", json=body, timeout=60)
            assert one.status_code == inside.status_code == 200, inside.text
            a, b = one.json()["results"], inside.json()["results"]
            assert [(r["id"], r["stage"], r["text"]) for r in a] == [(r["id"], r["stage"], r["text"]) for r in b]
            assert np.allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-5)
        texts = ["aspirin", "Does smoking cause lung cancer?"]
        emb = httpx.post(f"{url}/v1/embeddings", json={"model": "tiny-embed", "input": texts}, timeout=60).json()
        got = np.array([d["embedding"] for d in emb["data"]], dtype=np.float32)
        assert np.allclose(got, library["engine"].encoder.encode_queries(texts, progress=False), atol=1e-5)
        ready = httpx.get(f"{url}/readyz", timeout=60).json()
        assert ready["retriever"]["ready"] and ready["retriever"]["model"] == "tiny-embed"
        assert ready["retriever"]["serve"]["replicas"] == {"RUNNING": 1}  # the Ingress's own replica
        bad = httpx.post(f"{url}/search", json={"query": "x", "k": 0}, timeout=60)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "k"
    finally:
        serve.delete("inside")


def test_without_a_reranker_both_rerank_routes_say_no_reranker(server):
    url, auth = f"{server['url']}/secure", {"Authorization": f"Bearer {KEY}"}
    for path, body in (("/search", {"query": "cells", "rerank": True}),
                       ("/v1/rerank", {"query": "cells", "documents": ["a cell"]})):
        r = httpx.post(f"{url}{path}", json=body, headers=auth, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "no_reranker", (path, r.text)


def test_a_killed_replica_costs_no_request_and_readiness_shows_its_return(server, artifacts):
    """Two retriever replicas serve 2,000 searches at concurrency 8; one replica, found by its
    process title among this test's own descendants, is SIGKILLed by PID after 300. A failed
    call (a search is idempotent) is retried once. >= 99.9% succeed, /readyz shows the deployment
    short of a replica while it is replaced, and then two running again, the new one another
    process."""
    import os
    import signal
    import time

    from ray import serve

    from rayrag.serve.app import build
    from rayrag.serve.local import wait_ready

    serve.run(build(_cfg(artifacts["index"], retriever={**SMALL, "num_replicas": 2})), name="replicas",
              route_prefix="/replicas")
    url = f"{server['url']}/replicas"

    def serve_view() -> dict:
        return httpx.get(f"{url}/readyz", timeout=60).json()["retriever"]["serve"]

    try:
        wait_ready(url, 300)
        before = _replica_pids("replicas").get("Retriever", set())
        assert len(before) == 2 and serve_view()["replicas"] == {"RUNNING": 2}
        queries = [json.loads(line)["text"] for line in artifacts["corpus"].read_text().splitlines()]
        done, first_failures, failed, views, killed = 0, 0, 0, [], []

        async def load():
            nonlocal done, first_failures, failed
            todo = list(range(2000))
            async with httpx.AsyncClient(base_url=url, timeout=60) as c:
                async def one(i: int) -> bool:
                    try:
                        r = await c.post("/search", json={"query": queries[i % len(queries)][:150], "k": 3})
                        return r.status_code == 200 and len(r.json()["results"]) == 3
                    except httpx.HTTPError:
                        return False

                async def worker():
                    nonlocal done, first_failures, failed
                    while todo:
                        i = todo.pop()
                        if not await one(i):
                            first_failures += 1
                            failed += not await one(i)  # the one retry
                        done += 1
                        if done == 300 and not killed:
                            victim = sorted(before)[0]
                            os.kill(victim, signal.SIGKILL)
                            killed.append(victim)

                async def watch():
                    while todo:
                        if killed:
                            views.append(await asyncio.to_thread(serve_view))
                        await asyncio.sleep(0.5)

                await asyncio.gather(watch(), *(worker() for _ in range(8)))

        asyncio.run(load())
        assert killed, "no replica was killed"
        print(f"2000 searches, 1 replica killed: {first_failures} failed once, {failed} failed after the retry")
        assert failed <= 2, (failed, first_failures)  # >= 99.9%
        assert any(v["replicas"].get("RUNNING", 0) < 2 or v["status"] != "HEALTHY" for v in views), views
        deadline = time.time() + 180
        while serve_view() != {"status": "HEALTHY", "replicas": {"RUNNING": 2}}:
            assert time.time() < deadline, serve_view()
            time.sleep(1)
        after = _replica_pids("replicas").get("Retriever", set())
        assert len(after) == 2 and killed[0] not in after and len(after & before) == 1
        assert httpx.post(f"{url}/search", json={"query": "cells", "k": 2}, timeout=60).status_code == 200
    finally:
        serve.delete("replicas")
# ------------------------------------------------------------------------------------------
# Index swap: a new index in the Serve config is loaded beside the served one and swapped in
# ------------------------------------------------------------------------------------------

def _deploy_declaratively(cfg, name: str) -> None:
    """Deploy ``cfg`` as `serve deploy` and a RayService update do: the Serve config (the layout
    `rayrag serve build` writes) applied by the controller. The dashboard's REST endpoint behind
    `serve deploy` makes this same call; the tests run Ray without a dashboard. (`serve.run` is no
    stand-in: it gives every deployment a new code version, so it always restarts the replicas.)"""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    from rayrag.serve.serve_yaml import serve_config

    doc = serve_config(cfg)
    doc["applications"][0].update(name=name, route_prefix=f"/{name}")
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(doc))


def _replica_pids(app: str) -> dict[str, set[int]]:
    """PIDs of ``app``'s replica processes by deployment: Ray titles them
    ``ray::ServeReplica:<app>:<deployment>``, and they descend from this process (ray.init)."""
    import psutil

    out: dict[str, set[int]] = {}
    for p in psutil.Process().children(recursive=True):
        try:
            title = " ".join(p.cmdline())
        except psutil.Error:
            continue
        prefix = f"ray::ServeReplica:{app}:"
        if title.startswith(prefix):
            # the title's tail names the method running (".handle_request..."), which changes
            out.setdefault(title.removeprefix(prefix).split()[0].split(".")[0], set()).add(p.pid)
    return out


class _Load:
    """``n`` clients searching back to back until stopped (or ``limit_s``): every answer is logged
    as (start, end, status, result ids or error text, model)."""

    def __init__(self, url: str, n: int = 8, limit_s: float = 900.0):
        import threading
        import time

        self.url, self.log, self.stop = url, [], threading.Event()
        self._deadline = time.monotonic() + limit_s
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def _client(self, i: int) -> None:
        import time

        queries = ["vitamin D and bone density", "protein folding in cells", "smoking and cancer", "stem cells"]
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while not self.stop.is_set() and time.monotonic() < self._deadline:
                t0 = time.monotonic()
                try:
                    r = c.post("/search", json={"query": queries[i % 4], "k": 5})
                    ok = r.status_code == 200
                    body = r.json()
                    self.log.append((t0, time.monotonic(), r.status_code,
                                     [h["id"] for h in body["results"]] if ok else r.text, body.get("model")))
                except Exception as e:  # a dropped connection is a failed request too
                    self.log.append((t0, time.monotonic(), None, repr(e), None))

    def wait_for(self, predicate, timeout: float = 300.0) -> float:
        """Until some logged answer satisfies ``predicate``; the earliest such answer's end time."""
        import time

        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            hits = [e for e in list(self.log) if predicate(e)]
            if hits:
                return min(e[1] for e in hits)
            time.sleep(0.2)
        raise AssertionError("no such answer in time")

    def more(self, n: int) -> None:
        """Let ``n`` more requests complete."""
        import time

        goal = len(self.log) + n
        while len(self.log) < goal:
            time.sleep(0.1)

    def finish(self) -> list:
        self.stop.set()
        for t in self.threads:
            t.join(120)
        return list(self.log)


def _damaged_copy(index, folder):
    shutil.copytree(index, folder)
    data = bytearray((folder / "index.faiss").read_bytes())
    mid = len(data) // 2
    data[mid:mid + 8] = bytes(b ^ 0xFF for b in data[mid:mid + 8])  # flipped bits: a checksum mismatch
    (folder / "index.faiss").write_bytes(bytes(data))
    return folder


def test_index_swap_under_load_and_a_damaged_index_is_refused(server, artifacts, data_dir, tmp_path):
    """A new index in the Serve config (the Retriever's user_config) is loaded and checked beside the
    served one and swapped in while 8 clients search: no request fails, answers come from the old
    index until the swap and from the new one after it, and no replica restarts. A damaged index
    is then refused: the new one keeps serving, readiness stays 200 and says why."""
    import time

    from ray import serve

    from rayrag.serve.local import wait_ready

    ids = lambda index: set((index / "ids.txt").read_text().split())  # noqa: E731
    index_a = artifacts["index"]
    index_b = make_index(artifacts["model"], make_corpus(data_dir, _mkdir(tmp_path / "b"), start=120),
                         tmp_path / "index-b")
    ids_a, ids_b = ids(index_a), ids(index_b)
    assert len(ids_a) == len(ids_b) == 120 and not ids_a & ids_b
    small = {"num_cpus": 0.1}
    cfg = lambda index, name: _cfg(index, model_name=name, retriever=small, ingress=small)  # noqa: E731
    url = f"{server['url']}/swap"
    _deploy_declaratively(cfg(index_a, "model-a"), "swap")
    load = None
    try:
        wait_ready(url, 300)
        pids = _replica_pids("swap")
        assert set(pids) == {"Ingress", "Retriever"}, pids
        load = _Load(url)
        load.more(20)

        t_b = time.monotonic()
        _deploy_declaratively(cfg(index_b, "model-b"), "swap")
        first_b = load.wait_for(lambda e: e[2] == 200 and set(e[3]) <= ids_b)
        load.more(40)
        ready = httpx.get(f"{url}/readyz", timeout=60)
        assert ready.status_code == 200 and ready.json()["retriever"]["index"] == str(index_b)
        assert "swap_error" not in ready.json()["retriever"]

        bad = _damaged_copy(index_b, tmp_path / "index-bad")
        t_bad = time.monotonic()
        _deploy_declaratively(cfg(bad, "model-bad"), "swap")
        refused = _poll(lambda: "swap_error" in httpx.get(f"{url}/readyz", timeout=60).json()["retriever"])
        load.more(40)
        log = load.finish()
        ready = httpx.get(f"{url}/readyz", timeout=60)
        assert _replica_pids("swap") == pids  # swapped in place: no replica restarted
    finally:
        if load is not None:
            load.finish()
        serve.delete("swap")

    failed = [e for e in log if e[2] != 200]
    assert not failed, failed[:5]
    source = lambda e: "a" if set(e[3]) <= ids_a else "b" if set(e[3]) <= ids_b else "mixed"  # noqa: E731
    assert all(e[3] and source(e) != "mixed" for e in log)
    assert all(source(e) == "a" and e[4] == "model-a" for e in log if e[1] < t_b)
    assert all(source(e) == "b" for e in log if e[0] > first_b)  # one switch, never back
    # the ingress re-reads the model name at least every INFO_TTL_S: no stale name after that
    assert all(e[4] == "model-b" for e in log if e[0] > first_b + 2.0)
    during_b = [e for e in log if t_b <= e[0] < first_b]
    during_bad = [e for e in log if e[0] >= t_bad]
    # the damaged index's name is never shown; a name older than B's is allowed only within the
    # ingress's INFO_TTL_S of the switch (checked above), which a fast machine can reach t_bad in
    assert during_bad and all(source(e) == "b" and e[4] != "model-bad" for e in during_bad)
    body = ready.json()
    assert ready.status_code == 200 and body["status"] == "ready"
    r = body["retriever"]
    assert r["index"] == str(index_b) and r["model"] == "model-b"
    assert str(bad) in r["swap_error"] and "checksum mismatch" in r["swap_error"], r
    print(f"\nindex swap: {len(log)} requests, {len(failed)} failed; A->B took {first_b - t_b:.1f}s "
          f"({len(during_b)} requests meanwhile, all answered from A); damaged index refused after "
          f"{refused - t_bad:.1f}s ({len(during_bad)} requests from then on, all answered from B); "
          f"replicas {pids} kept")


def _poll(condition, timeout: float = 300.0) -> float:
    """Until ``condition()`` holds; when it did."""
    import time

    t_end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < t_end, "condition not met in time"
        time.sleep(0.5)
    return time.monotonic()


def _mkdir(path):
    path.mkdir(parents=True)
    return path
