"""Nothing untrained and nothing open is shipped: every config under jobs/configs/ and k8s/.

A reranker is served or evaluated only when it was trained: a registry reference (models:/,
runs:/) or the model folder a shipped train config writes. The development flag for stand-in
rerankers and the anonymous-access opt-out appear in no shipped file.
"""
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*(REPO / "jobs" / "configs").rglob("*.yaml"), *(REPO / "k8s").rglob("*.yaml")])
FORBIDDEN = re.compile(r"(dev_untrained_reranker|allow_anonymous)\s*[:=]\s*['\"]?true|allow_untrained", re.I)


def _trained_folders() -> set[str]:
    """Model folders the shipped train configs write."""
    out = set()
    for f in (REPO / "jobs" / "configs").glob("train_*.yaml"):
        out.add(f"{yaml.safe_load(f.read_text())['output_dir']}/model")
    return out


def _is_trained(ref: str | None) -> bool:
    return ref is None or ref.startswith(("models:/", "runs:/")) or ref.rstrip("/") in _trained_folders()


def _serve_apps(doc) -> list[dict]:
    """Serve application args in a Serve config file or a RayService."""
    if not isinstance(doc, dict):
        return []
    if doc.get("kind") == "RayService":
        doc = yaml.safe_load(doc["spec"]["serveConfigV2"])
    return [a.get("args") or {} for a in doc.get("applications") or []]


def test_there_are_shipped_configs_to_check():
    names = {p.name for p in SHIPPED}
    assert {"scifact.yaml", "rayservice.yaml", "evaluate_scifact_rerank.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_no_shipped_config_serves_an_untrained_reranker_or_an_open_api(path):
    from rayrag.config import from_dict
    from rayrag.serve.config import ServeConfig

    text = path.read_text()
    bad = FORBIDDEN.search(text)
    assert not bad, f"{path.relative_to(REPO)} sets {bad.group(0)!r}"
    for doc in yaml.safe_load_all(text):
        for args in _serve_apps(doc):
            cfg = from_dict(ServeConfig, args)
            assert not cfg.dev_untrained_reranker and not cfg.auth.allow_anonymous
            assert _is_trained(cfg.reranker), f"{path.name} serves reranker {cfg.reranker!r}, not a trained one"
        if isinstance(doc, dict) and "rerank" in doc and "retrievers" in doc:  # an evaluate config
            assert _is_trained(doc["rerank"]), f"{path.name} evaluates with reranker {doc['rerank']!r}"


def test_the_check_catches_what_it_should():
    from rayrag.config import from_dict
    from rayrag.serve.config import ServeConfig

    assert FORBIDDEN.search("    dev_untrained_reranker: true") and FORBIDDEN.search("auth.allow_anonymous=true")
    assert not FORBIDDEN.search("dev_untrained_reranker: false")
    assert not _is_trained("minilm") and not _is_trained("out/somewhere/model")
    assert _is_trained("models:/scifact-cross-encoder/1") and _is_trained("out/train/scifact-cross/model")
    stand_in = {"applications": [{"args": {"index": "x", "reranker": "minilm"}}]}
    assert not _is_trained(from_dict(ServeConfig, _serve_apps(stand_in)[0]).reranker)
