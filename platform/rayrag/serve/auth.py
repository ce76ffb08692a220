"""Optional bearer-token access.

The key comes from a secret file (a mounted Kubernetes Secret) or an environment variable
whose *name* is in the config, so the key itself never sits in a config file, a Serve YAML
or an MLflow param. Keys are compared with ``hmac.compare_digest`` so the time a wrong key
takes does not reveal how much of it matched.
"""
from __future__ import annotations

import hmac
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
