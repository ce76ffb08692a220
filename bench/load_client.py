"""A lean HTTP/1.1 load client for the Serve benches: keep-alive connections, request bytes
built once, responses read to their end (Content-Length or chunked) and their status checked.

Why not httpx: the client shares this machine's 2 cores with the server under test, and what it
spends is taken from the server. httpx spends about 3 ms of CPU per request here (5% of the
machine at 35 req/s, bench/serve_cost.py run 9), which is the whole 10% margin the ASGI
fairness bar leaves; this client parses only the status line and the framing headers.
Why not httptools' parser (uvicorn's, installed with ray[serve]) for the framing: tried, it cost
0.67-0.77 ms of client CPU per /search answer (16 KB) against this one's 0.32-0.49, and 0.17-0.20
against 0.07-0.19 ms on the no-model route (3 rounds each against the ASGI app, 2026-12-03):
its per-chunk body callbacks into Python cost more than two reads of known length.

    sequential(url, bodies) / concurrent(url, bodies, concurrency=16, path="/search")
return the same figures as bench/serve_latency.py's httpx functions (``stats``).
"""
from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_latency import stats  # noqa: E402


def request_bytes(url: str, path: str, body: dict | None) -> bytes:
    """One HTTP/1.1 request: a POST of ``body`` as JSON, or a GET when ``body`` is None."""
    host = urlsplit(url).netloc
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    return head.encode() + data


def parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """(status, content length or None, chunked, server closes) from a response's header block."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    length, chunked, close = None, False, parts[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            close = value == b"close"
    return int(parts[1]), length, chunked, close


class Connection:
    """One blocking keep-alive connection (sequential and paired runs)."""

    def __init__(self, url: str, timeout: float = 120):
        u = urlsplit(url)
        self.addr, self.timeout, self.sock, self.buf = (u.hostname, u.port or 80), timeout, None, b""

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.addr, timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the server closed the connection mid-response")
        self.buf += data

    def _until(self, sep: bytes) -> bytes:
        while (i := self.buf.find(sep)) < 0:
            self._fill()
        out, self.buf = self.buf[:i], self.buf[i + len(sep):]
        return out

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, request: bytes) -> tuple[int, bytes]:
        """(status, body) of one request; reconnects when the server has closed the connection
        (``Connection: close``, or a kept-alive one it timed out while idle: then sent again)."""
        reused = self.sock is not None
        if not reused:
            self._connect()
        try:
            self.sock.sendall(request)
            head = self._until(b"\r\n\r\n")
        except OSError:  # ConnectionError included
            self.close()
            if not reused:
                raise
            return self.send(request)
        status, length, chunked, close = parse_head(head)
        if chunked:
            body = b""
            while size := int(self._until(b"\r\n").split(b";")[0], 16):
                body += self._exactly(size + 2)[:-2]
            self._until(b"\r\n")  # no trailers are sent by the servers under test
        else:
            body = self._exactly(length or 0)
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


def sequential(url: str, bodies: list[dict], path: str = "/search") -> dict:
    conn = Connection(url)
    try:
        conn.send(request_bytes(url, path, bodies[0]))  # warm the connection
        reqs = [request_bytes(url, path, b) for b in bodies]
        lat, errors = [], 0
        t0 = time.perf_counter()
        for r in reqs:
            s = time.perf_counter()
            errors += conn.send(r)[0] != 200
            lat.append(time.perf_counter() - s)
        return stats(lat, time.perf_counter() - t0, errors)
    finally:
        conn.close()


async def _send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bool]:
    """(status, server closes) of one request on an open asyncio connection."""
    writer.write(request)
    status, length, chunked, close = parse_head((await reader.readuntil(b"\r\n\r\n"))[:-4])
    if chunked:
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    elif length:
        await reader.readexactly(length)
    return status, close


def concurrent(url: str, bodies: list[dict | None], concurrency: int = 16, path: str = "/search") -> dict:
    """``bodies`` are POSTed to ``path`` over ``concurrency`` keep-alive connections, each taking
    the next request as soon as it has its answer; a None body is a GET of ``path``."""
    u = urlsplit(url)
    reqs = [request_bytes(url, path, b) for b in bodies]

    async def run() -> dict:
        queue, lat, errors = list(reqs), [], 0

        async def worker() -> None:
            nonlocal errors
            conn = None
            while queue:
                r = queue.pop()
                s = time.perf_counter()
                try:
                    if conn is None:
                        conn = await asyncio.open_connection(u.hostname, u.port or 80)
                        conn[1].get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    status, close = await asyncio.wait_for(_send(*conn, r), 1200)
                    errors += status != 200
                except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
                    errors, close = errors + 1, True
                lat.append(time.perf_counter() - s)
                if close and conn is not None:
                    conn[1].close()
                    conn = None
            if conn is not None:
                conn[1].close()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return stats(lat, time.perf_counter() - t0, errors)

    return asyncio.run(run())
