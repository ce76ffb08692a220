"""Typed job configs: dataclasses loaded from YAML, then `key=value` overrides.

Overrides use dotted keys for nested dataclasses (``tracking.experiment=foo``) and
are parsed as YAML scalars, so ``k=100`` is an int and ``retrievers=[bm25,minilm]`` a list.
A ``[...]`` list is split only at commas outside brackets and quotes, so
``retrievers=[bm25,hybrid(bm25,minilm)]`` has two items (YAML alone would make three).
Unknown keys and values of the wrong type are rejected before any work starts.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def split_top_level(text: str, sep: str = ",", brackets: str = "(", quotes: bool = False) -> list[str]:
    """Split on ``sep`` outside brackets: ``"a,rrf(b,c)" -> ["a", "rrf(b,c)"]``.

    ``brackets`` names the opening characters that nest (retriever names use only parentheses;
    YAML lists also ``[`` and ``{``); with ``quotes``, nothing inside '...' or "..." splits.
    """
    closers = {_CLOSERS[b]: b for b in brackets}
    what = "parentheses" if brackets == "(" else "brackets"
    parts, stack, cur, quote = [], [], [], None
    for c in text:
        if quote:
            quote = None if c == quote else quote
        elif quotes and c in "'\"":
            quote = c
        elif c == sep and not stack:
            parts.append("".join(cur))
            cur = []
            continue
        elif c in brackets:
            stack.append(c)
        elif c in closers:
            if not stack or stack.pop() != closers[c]:
                raise ConfigError(f"unbalanced {what} in {text!r}")
        cur.append(c)
    if stack or quote:
        raise ConfigError(f"unbalanced {'quotes' if quote else what} in {text!r}")
    return parts + ["".join(cur)]


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in split_top_level(value) if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # PyYAML (YAML 1.1) reads "1e-3" as a string: accept what Python reads as a number.
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _over_default(f: dataclasses.Field, value: Any) -> Any:
    """A partial section fills the rest from the field's own default, not its class's:
    ``ingress: {num_cpus: 0.2}`` keeps the ingress's defaults, which differ from a model
    deployment's."""
    if not isinstance(value, dict):
        return value
    if f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        default = f.default
    if not dataclasses.is_dataclass(default) or isinstance(default, type):
        return value
    return merge(to_dict(default), value)


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and bad types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + u for u in unknown)}; "
            f"valid keys: {', '.join(prefix + f for f in fields)}"
        )
    kwargs = {name: _coerce(_over_default(fields[name], v), hints[name], prefix + name)
              for name, v in data.items()}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``: the form MLflow params take."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def parse_overrides(items: Iterable[str]) -> dict:
    """``["a.b=1", "c=x"] -> {"a": {"b": 1}, "c": "x"}`` with YAML scalar parsing."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        value = _parse_value(raw, item)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return out


def _parse_value(raw: str, item: str) -> Any:
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        # Split here rather than in YAML, which would cut `hybrid(bm25,minilm)` at its comma.
        items = split_top_level(text[1:-1], brackets="([{", quotes=True)
        if items[-1].strip() == "":
            items.pop()  # "[]", or a trailing comma, which YAML allows too
        if any(not i.strip() for i in items):
            raise ConfigError(f"override {item!r}: empty list item")
        return [_parse_value(i, item) for i in items]
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: cannot parse value: {e}") from None


def merge(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``, nested mappings merged key by key."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = (),
                base: dict | None = None, **explicit: Any) -> T:
    """Class defaults <- ``base`` (a job's own defaults) <- YAML file <- ``key=value`` overrides
    <- explicit keyword values (everyday flags)."""
    data = merge(base or {}, load_yaml(path) if path else {})
    data = merge(data, parse_overrides(overrides))
    data = merge(data, {k: v for k, v in explicit.items() if v is not None})
    return from_dict(cls, data)
