"""Shared fixtures. Real data comes from $RAYRAG_DATA_DIR (CI: ../shared/datasets)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

# Ray reads this once at import: local test clusters must listen on 127.0.0.1 only.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    raw = os.environ.get("RAYRAG_DATA_DIR") or str(REPO.parent / "shared" / "datasets")
    path = Path(raw).resolve()
    if not (path / "scifact" / "corpus.jsonl").is_file():
        pytest.fail(f"real datasets not found at {path}: set RAYRAG_DATA_DIR to the folder holding scifact/")
    return path


@pytest.fixture(scope="session")
def scifact_test(data_dir):
    from rayrag.data import load_beir

    return load_beir(data_dir / "scifact", "test")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Each test tracks into its own embedded MLflow store, never the user's ~/.rayrag."""
    monkeypatch.setenv("RAYRAG_HOME", str(tmp_path_factory.mktemp("rayrag-home")))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 1-layer BERT built from a config (random weights) with MiniLM's real tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from rayrag.assets import resolve_model

    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(resolve_model("minilm").path)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertForMaskedLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
