"""Small real artifacts for the Serve tests: a SciFact slice, its FAISS index, a reranker folder."""
from __future__ import annotations

import json
from pathlib import Path


def make_corpus(data_dir: Path, out: Path, n: int = 120) -> Path:
    """The first ``n`` SciFact abstracts as their own BEIR corpus.jsonl."""
    lines = (data_dir / "scifact" / "corpus.jsonl").read_text().splitlines()[:n]
    path = out / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_index(model: Path, corpus: Path, folder: Path) -> Path:
    """A Flat index over ``corpus`` encoded with ``model``, saved as the index job saves one."""
    from rayrag.data.beir import load_corpus
    from rayrag.encode.store import sha256_file
    from rayrag.index.faiss_index import FaissParams, build_faiss
    from rayrag.index.store import save_index
    from rayrag.models.dense import DenseEncoder

    docs = load_corpus(corpus)
    ids = list(docs)
    enc = DenseEncoder(str(model))
    vectors = enc.encode_docs([docs[i].full_text for i in ids], progress=False)
    save_index(folder, "dense", build_faiss(vectors, FaissParams(kind="flat")), ids,
               {"model": str(model), "model_path": str(model), "model_version": "test", "dim": enc.dim,
                "corpus": str(corpus), "corpus_sha256": sha256_file(corpus)})
    return folder


def make_reranker(model: Path, folder: Path) -> Path:
    """A cross-encoder folder with a fixed (seeded) head, so server and test load equal weights."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_pretrained(model, num_labels=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(model).save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]
    return folder
