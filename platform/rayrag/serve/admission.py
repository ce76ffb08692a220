"""Admission: what the ingress takes in, decided before a request is parsed or reaches a model.

- At most ``admission.max_concurrent_requests`` API calls in progress per ingress replica; one
  more is answered 503 ``overloaded`` with ``Retry-After`` at once instead of waiting in a queue
  until its client gives up. Probes (/healthz, /readyz) are never refused: a busy replica is alive.
- A body over ``admission.max_body_bytes`` is 413 ``too_large``: refused by its Content-Length
  before any of it is read, or as soon as a chunked one passes the limit.
- A body not complete ``admission.body_timeout_s`` after the request began is 408 ``body_timeout``,
  so a slow client holds its slot that long at most.

Serve's proxy hands the request to the replica as soon as the headers are in and streams the body
after it, so the slot is taken while a slow body is still arriving. Serve's own overload answer
(``max_queued_requests``) is plain text from the proxy; this one has the API's error shape.
The middleware is plain ASGI, not Starlette's BaseHTTPMiddleware, to see the body as it arrives;
one replica's requests share one event loop, so a plain counter is exact.
"""
from __future__ import annotations

import asyncio

from .config import Admission, Limits
from .errors import error_response

PROBES = ("/healthz", "/readyz")


class Gate:
    def __init__(self, admission: Admission, limits: Limits):
        self.limit, self.retry_after_s = admission.max_concurrent_requests, admission.retry_after_s
        self.max_body, self.body_timeout_s = admission.body_limit(limits), admission.body_timeout_s
        self.active = 0

    async def admit(self, app, scope, receive, send) -> None:
        if self.active >= self.limit:
            return await error_response(
                503, f"overloaded: this replica is serving its limit of {self.limit} requests; retry after "
                     f"{self.retry_after_s}s", code="overloaded",
                headers={"Retry-After": str(self.retry_after_s)})(scope, receive, send)
        self.active += 1
        try:
            body = await self._body(scope, receive, send)
            if body is not None:
                await app(scope, _replay(body, receive), send)
        finally:
            self.active -= 1

    async def _body(self, scope, receive, send) -> bytes | None:
        """The whole body, or None once it has been refused (or its client went away)."""
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._too_large(scope, receive, send)
            return None
        loop = asyncio.get_running_loop()
        deadline, chunks, size = loop.time() + self.body_timeout_s, [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
                await error_response(408, f"the request body did not arrive within {self.body_timeout_s:g}s",
                                     code="body_timeout", headers={"Connection": "close"})(scope, receive, send)
                return None
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                await self._too_large(scope, receive, send)
                return None
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, scope, receive, send) -> None:
        await error_response(413, f"the request body is larger than this server's limit of {self.max_body} bytes",
                             code="too_large", headers={"Connection": "close"})(scope, receive, send)


def _replay(body: bytes, receive):
    """``receive`` for the app: the body read above, then the client's own (a disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def route_path(scope) -> str:
    """The path below the application's route prefix (Serve passes the prefix as root_path)."""
    path, root = scope["path"], scope.get("root_path", "").rstrip("/")
    return path[len(root):] or "/" if root and path.startswith(root) else path


class AdmissionMiddleware:
    """Puts every request but the probes through the Ingress replica's :class:`Gate`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or route_path(scope) in PROBES:
            return await self.app(scope, receive, send)
        from ray import serve

        # The app Serve runs is a copy frozen when the Ingress class was decorated; the replica's
        # Ingress instance, which holds the config, is reachable only through the replica context.
        await serve.get_replica_context().servable_object.gate.admit(self.app, scope, receive, send)
