"""bench/load_client.py against a real uvicorn server on loopback: both response framings
(Content-Length and chunked), error statuses counted, a server that closes the connection."""
from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import free_port, load_bench

BIG = {"results": [{"id": str(i), "text": "x" * 3000} for i in range(20)]}  # spans many TCP reads


@pytest.fixture(scope="module")
def server():
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()

    @app.post("/search")
    async def search(body: dict) -> dict:
        return {"echo": body, **BIG}

    @app.get("/stream")
    async def stream():
        async def parts():
            for i in range(5):
                yield f"part{i};" * 1000
        return StreamingResponse(parts(), media_type="text/plain")

    @app.post("/fail")
    async def fail(body: dict):
        return JSONResponse({"error": "no"}, status_code=503)

    @app.post("/close")
    async def close(body: dict):
        return JSONResponse({"ok": True}, headers={"Connection": "close"})

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                                        timeout_keep_alive=1))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(timeout=30)


@pytest.fixture(scope="module")
def lc():
    return load_bench("load_client")


def test_content_length_and_chunked_bodies_are_read_whole(server, lc):
    import json

    conn = lc.Connection(server)
    try:
        for i in range(3):  # the same keep-alive connection, responses kept apart
            status, body = conn.send(lc.request_bytes(server, "/search", {"query": f"q{i}", "k": 10}))
            assert status == 200 and json.loads(body) == {"echo": {"query": f"q{i}", "k": 10}, **BIG}
            status, body = conn.send(lc.request_bytes(server, "/stream", None))
            assert status == 200 and body.decode() == "".join(f"part{j};" * 1000 for j in range(5))
    finally:
        conn.close()


def test_sequential_and_concurrent_count_requests_and_errors(server, lc):
    bodies = [{"query": f"q{i}", "k": 10} for i in range(40)]
    for run in (lambda p: lc.sequential(server, bodies, path=p), lambda p: lc.concurrent(server, bodies, 8, path=p)):
        ok = run("/search")
        assert ok["n"] == 40 and ok["errors"] == 0 and ok["rps"] > 0
        bad = run("/fail")
        assert bad["n"] == 40 and bad["errors"] == 40
        closing = run("/close")  # each answer ends its connection: the client reconnects
        assert closing["n"] == 40 and closing["errors"] == 0
    gets = lc.concurrent(server, [None] * 10, 4, path="/stream")
    assert gets["n"] == 10 and gets["errors"] == 0


def test_a_connection_the_server_timed_out_is_opened_again(server, lc):
    conn = lc.Connection(server)
    try:
        assert conn.send(lc.request_bytes(server, "/search", {"q": 1}))[0] == 200
        time.sleep(2.5)  # past the server's 1 s keep-alive timeout: it has closed the connection
        assert conn.send(lc.request_bytes(server, "/search", {"q": 2}))[0] == 200
    finally:
        conn.close()


def test_a_refused_connection_is_an_error_not_a_hang(lc):
    out = lc.concurrent(f"http://127.0.0.1:{free_port()}", [{"q": 1}] * 5, 2)
    assert out["n"] == 5 and out["errors"] == 5


def test_a_non_http_answer_is_refused(lc):
    with pytest.raises(ConnectionError, match="not an HTTP/1.x status line"):
        lc.parse_head(b"SSH-2.0-OpenSSH\r\n")
