"""One error shape for every failure: OpenAI's ``{"error": {"message", "type", "param", "code"}}``.

FastAPI's own 422 (validation) and JSON-decode errors, Starlette's 404/405 and anything
unexpected are all rewritten into it, so clients parse one format. Bad input is always a 4xx;
only a fault of the server itself is a 5xx.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("ray.serve")

TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
         405: "invalid_request_error", 413: "invalid_request_error", 503: "service_unavailable"}


class BadInput(ValueError):
    """Raised in a replica for input the ingress should have stopped; reported as 400."""


class NotReady(RuntimeError):
    """The replica is still loading (or retrying a failed load); reported as 503."""


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": TYPES.get(status, "server_error" if status >= 500 else
                                                              "invalid_request_error"),
                      "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _loc(loc: tuple) -> str | None:
    """("body", "messages", 2, "content") -> "messages[2].content", the form our own checks use."""
    out = ""
    for p in loc:
        if p == "body":
            continue
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"msg": "invalid request", "loc": (), "type": "invalid"}
    if first.get("type") == "json_invalid":
        return error_response(400, f"request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}",
                              code="invalid_json")
    param = _loc(tuple(first.get("loc", ())))
    if first.get("type") == "missing" and param is None:
        return error_response(400, "request body is missing: send a JSON object", code="missing_body")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    where = f"{param}: " if param else ""
    return error_response(400, f"{where}{first['msg']}{more}", param=param, code=first.get("type"))


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _on_validation(request: Request, exc: RequestValidationError):
        return _validation(request, exc)

    @app.exception_handler(ApiError)
    async def _on_api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.param, exc.code, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(exc.status_code, message, code="not_found" if exc.status_code == 404 else None,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _on_unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return error_response(500, "internal server error", code="internal_error")
