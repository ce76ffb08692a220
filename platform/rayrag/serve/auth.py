"""Bearer-token access, failing closed.

The key comes from a secret file (a mounted Kubernetes Secret) or an environment variable
whose *name* is in the config, so the key itself never sits in a config file, a Serve YAML
or an MLflow param. Keys are compared with ``hmac.compare_digest`` so the time a wrong key
takes does not reveal how much of it matched.

Without a key the API is open, so it may only listen on loopback, where only this machine
reaches it: any other address needs a key or the explicit ``auth.allow_anonymous`` opt-out.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from fastapi.security import HTTPAuthorizationCredentials

from ..errors import ConfigError
from .config import Auth
from .errors import ApiError

CHALLENGE = {"WWW-Authenticate": "Bearer"}


def load_key(auth: Auth) -> bytes | None:
    """The configured key, or None when access is open."""
    key = None
    if auth.api_key_file:
        path = Path(auth.api_key_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"auth.api_key_file {path} does not exist")
        key = path.read_text().strip()
        if not key:
            raise ConfigError(f"auth.api_key_file {path} is empty")
    elif auth.api_key_env:
        key = os.environ.get(auth.api_key_env, "").strip() or None
    if key is None and auth.required:
        raise ConfigError(f"auth.required is set but no key was found (file {auth.api_key_file!r}, "
                          f"environment variable {auth.api_key_env!r})")
    return key.encode() if key else None


class KeyCheck:
    def __init__(self, key: bytes | None):
        self._key = key

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def __call__(self, creds: HTTPAuthorizationCredentials | None) -> None:
        if self._key is None:
            return
        if creds is None or creds.scheme.lower() != "bearer":
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key",
                           headers=CHALLENGE)
        if not hmac.compare_digest(creds.credentials.encode(), self._key):
            raise ApiError(401, "invalid API key", code="invalid_api_key", headers=CHALLENGE)


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; 0.0.0.0 (every address) is not."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


def check_exposure(auth: Auth, key: bytes | None, host: str | None) -> None:
    """Refuse to serve an open API on an address other machines can reach."""
    if key is None and not is_loopback(host) and not auth.allow_anonymous:
        where = f"file {auth.api_key_file}" if auth.api_key_file else f"environment variable {auth.api_key_env}"
        raise ConfigError(
            f"refusing to serve on {host or 'all addresses'} without an API key: anyone who reaches that "
            f"address could use the API. Put a key in the {where} (in Kubernetes, mount a Secret and set "
            f"auth.api_key_file), or bind to 127.0.0.1. To serve openly on purpose, set "
            f"auth.allow_anonymous: true.")


def serve_http_host() -> str | None:
    """The address Serve's proxies listen on, as the controller knows it (from a replica too)."""
    from ray.serve.context import _get_global_client

    return _get_global_client().http_config.host
