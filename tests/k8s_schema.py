"""Offline validation of the k8s/ manifests, used by tests/test_k8s.py.

* ``ray.io`` objects (RayCluster, RayJob) against the openAPIV3Schema of the KubeRay CRD for
  their ``apiVersion``, made strict the way the API server's structural pruning would notice:
  an object schema with ``properties`` rejects any other field unless it says
  ``x-kubernetes-preserve-unknown-fields: true`` or has its own ``additionalProperties``.
* Built-in kinds with the ``kubernetes-validate`` command (``--strict``: unknown fields are
  errors), run as a subprocess; a kind it has no schema for is a failure, not a warning.
* Resource quantities of built-in kinds: kubernetes-validate's schemas accept any string
  there (``cpu: "2 cores"`` passes), so :func:`builtin_errors` validates again with the same
  schemas after giving ``Quantity`` the grammar of k8s.io/apimachinery (the pattern the KubeRay
  CRDs carry for their quantities).
"""
from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

# The Kubernetes version whose schemas kubernetes-validate uses (it ships 1.25 ... 1.37).
K8S_VERSION = "1.32.0"

# k8s.io/apimachinery/pkg/api/resource Quantity, as written in the KubeRay CRDs.
QUANTITY_PATTERN = (r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
                    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# Minimal metadata check for custom objects: the CRD itself only says `type: object`.
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": DNS1123_SUBDOMAIN},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

# Keywords whose value is a schema or a list of schemas; `properties`-like ones map names to schemas.
_SCHEMA_KEYS = ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_all(text: str) -> list[dict]:
    return [d for d in yaml.load_all(text, Loader=_Loader) if d]


# --------------------------------------------------------------------------------------------
# CRDs
# --------------------------------------------------------------------------------------------

def strict_schema(node: Any) -> Any:
    """Copy of an OpenAPI v3 (Kubernetes structural) schema as JSON Schema that rejects
    unknown fields. ``x-kubernetes-int-or-string`` becomes integer-or-string, ``nullable``
    admits null, an embedded resource admits apiVersion/kind/metadata."""
    if isinstance(node, list):
        return [strict_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_KEYS and isinstance(value, (dict, list)):
            out[key] = strict_schema(value)
        else:
            out[key] = value
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    if out.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=None)
def _crd(path: str) -> dict:
    crd = yaml.load(Path(path).read_text(), Loader=_Loader)
    if crd.get("kind") != "CustomResourceDefinition":
        raise ValueError(f"{path} is not a CustomResourceDefinition")
    return crd


@functools.lru_cache(maxsize=None)
def crd_validator(crd_path: str, api_version: str) -> jsonschema.Draft202012Validator:
    """Validator for objects of ``api_version`` (``group/version``) of the CRD in ``crd_path``."""
    crd = _crd(crd_path)
    group, _, version = api_version.partition("/")
    spec = crd["spec"]
    if group != spec["group"]:
        raise ValueError(f"{crd_path} defines group {spec['group']}, not {group}")
    versions = {v["name"]: v for v in spec["versions"]}
    if version not in versions:
        raise ValueError(f"{crd_path} has no version {version} (has {sorted(versions)})")
    v = versions[version]
    if not v.get("served", False):
        raise ValueError(f"{crd_path}: version {version} is not served")
    schema = strict_schema(v["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = METADATA_SCHEMA
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": spec["names"]["kind"]}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def crd_errors(obj: dict, crd_path: str | Path) -> list[jsonschema.ValidationError]:
    validator = crd_validator(str(crd_path), obj.get("apiVersion", ""))
    return sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])


def error_path(err: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in err.absolute_path)


def describe(errors: Iterable[jsonschema.ValidationError]) -> str:
    return "\n".join(f"  {error_path(e) or '<root>'}: {e.message}" for e in errors)


# --------------------------------------------------------------------------------------------
# Built-in kinds: kubernetes-validate
# --------------------------------------------------------------------------------------------

@dataclass
class KVResult:
    doc: dict
    ok: bool
    line: str  # kubernetes-validate's own line for this document (or what went wrong)


def kubernetes_validate(docs: list[dict], version: str = K8S_VERSION) -> list[KVResult]:
    """Run ``kubernetes-validate --strict -k VERSION`` on each document (one file each, so
    every line of output belongs to exactly one document). Only an INFO ... passed line
    counts as a pass: ERROR, WARN (no schema for the kind) and silence are failures."""
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        raise RuntimeError("kubernetes-validate is not installed: "
                           ".venv/bin/pip install kubernetes-validate") from None
    with tempfile.TemporaryDirectory(prefix="kv-") as tmp:
        files = []
        for i, doc in enumerate(docs):
            f = Path(tmp) / f"doc{i:03d}.yaml"
            f.write_text(yaml.safe_dump(doc, sort_keys=False))
            files.append(str(f))
        proc = subprocess.run([sys.executable, "-m", "kubernetes_validate", "-k", version, "--strict",
                               *files], capture_output=True, text=True, timeout=300)
    lines = (proc.stdout + proc.stderr).splitlines()
    if "FATAL" in proc.stdout:
        raise RuntimeError(f"kubernetes-validate cannot check Kubernetes {version}:\n{proc.stdout}")
    results = []
    for f, doc in zip(files, docs):
        mine = [ln for ln in lines if f"{f} " in ln]
        ok = len(mine) == 1 and mine[0].startswith("INFO ") and " passed " in mine[0]
        results.append(KVResult(doc, ok, "\n".join(mine) or f"no output for this document "
                                                           f"(exit {proc.returncode}): {proc.stderr}"))
    return results


# --------------------------------------------------------------------------------------------
# Built-in kinds: the same schemas with Quantity given its grammar
# --------------------------------------------------------------------------------------------

def _schema_dir(version: str) -> Path:
    import importlib.resources

    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    return Path(str(root)) / f"v{version}-local-strict"


@functools.lru_cache(maxsize=None)
def _definitions(version: str) -> dict:
    defs = json.loads((_schema_dir(version) / "_definitions.json").read_text())
    q = "io.k8s.apimachinery.pkg.api.resource.Quantity"
    if q not in defs["$defs"]:
        raise RuntimeError(f"kubernetes-validate {version} schemas have no {q}")
    defs["$defs"][q] = {"anyOf": [{"type": "number"}, {"type": "string", "pattern": QUANTITY_PATTERN}]}
    return defs


@functools.lru_cache(maxsize=None)
def builtin_validator(kind: str, api_version: str, version: str = K8S_VERSION):
    from referencing import Registry, Resource

    # kubernetes-validate's file naming: v1 -> v1, apps/v1 -> apps-v1, networking.k8s.io/v1 -> networking-v1
    group, _, ver = api_version.rpartition("/")
    api = f"{group.split('.')[0]}-{ver}" if group else ver
    f = _schema_dir(version) / f"{kind.lower()}-{api}.json"
    if not f.is_file():
        raise LookupError(f"no schema for {kind} {api_version} in kubernetes-validate {version}")
    schema = json.loads(f.read_text())
    registry = Registry().with_resources([
        (schema["$id"], Resource.from_contents(schema)),
        (_definitions(version)["$id"], Resource.from_contents(_definitions(version))),
    ])
    return jsonschema.Draft202012Validator(schema, registry=registry)


def builtin_errors(doc: dict, version: str = K8S_VERSION) -> list[jsonschema.ValidationError]:
    """Strict schema errors of a built-in object, quantities checked against their grammar."""
    validator = builtin_validator(doc["kind"], doc["apiVersion"], version)
    return sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
