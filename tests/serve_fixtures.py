"""Small real artifacts for the Serve tests: a SciFact slice, its FAISS index, a reranker folder."""
from __future__ import annotations

import json
from pathlib import Path


def make_corpus(data_dir: Path, out: Path, n: int = 120, start: int = 0) -> Path:
    """``n`` SciFact abstracts from the ``start``-th on (the first ``n`` by default) as their own BEIR corpus.jsonl."""
    lines = (data_dir / "scifact" / "corpus.jsonl").read_text().splitlines()[start:start + n]
    path = out / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_index(model: Path, corpus: Path, folder: Path) -> Path:
    """A Flat index over ``corpus`` encoded with ``model``, saved as the index job saves one
    (a reasoning embedder's documents are embedded directly, as the encode job does)."""
    from rayrag.data.beir import load_corpus
    from rayrag.io import sha256_file
    from rayrag.index.faiss_index import FaissParams, build_faiss
    from rayrag.index.store import save_index
    from rayrag.models.reasoning_encoder import load_dense_encoder

    docs = load_corpus(corpus)
    ids = list(docs)
    enc = load_dense_encoder(str(model), side="doc")
    vectors = enc.encode_docs([docs[i].full_text for i in ids], progress=False)
    save_index(folder, "dense", build_faiss(vectors, FaissParams(kind="flat")), ids,
               {"model": str(model), "model_path": str(model), "model_version": "test", "dim": enc.dim,
                "corpus": str(corpus), "corpus_sha256": sha256_file(corpus)})
    return folder


def write_encode_output(folder: Path, ids: list[str], vectors, corpus: Path, model: str = "minilm",
                        per_shard: int = 40, model_path: str | None = None) -> Path:
    """A finished dense encode output over these vectors, in the layout ``jobs.encode`` writes
    (its own shard writer), for tests that feed the index job without running an encoder job."""
    from rayrag.encode.store import write_dense_shard
    from rayrag.io import sha256_file

    infos = [write_dense_shard(folder, j, ids[s:s + per_shard], vectors[s:s + per_shard])
             for j, s in enumerate(range(0, len(ids), per_shard))]
    manifest = {"kind": "dense", "model": model, "model_version": "test", "dim": int(vectors.shape[1]),
                "count": len(ids), "shards": infos, "corpus": str(corpus), "corpus_sha256": sha256_file(corpus)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def make_sharded_index(model: Path, corpus: Path, folder: Path, shards: int) -> Path:
    """``make_index``'s vectors as a sharded Flat index, written by the index job."""
    from rayrag.data.beir import load_corpus
    from rayrag.index.build import IndexConfig, run_index
    from rayrag.index.faiss_index import FaissParams
    from rayrag.models.reasoning_encoder import load_dense_encoder

    docs = load_corpus(corpus)
    ids = list(docs)
    vectors = load_dense_encoder(str(model), side="doc").encode_docs([docs[i].full_text for i in ids], progress=False)
    emb = write_encode_output(folder.with_name(folder.name + "-encode"), ids, vectors, corpus, model=str(model))
    run_index(IndexConfig(embeddings=str(emb), output_dir=str(folder), faiss=FaissParams(kind="flat"), shards=shards))
    return folder


def make_reranker(model: Path, folder: Path, corpus: Path, steps: int = 30) -> Path:
    """A cross-encoder trained for a few LCE steps (title -> its abstract against other abstracts).

    Its head is learned and saved, so it loads without the development flag, as a reranker from
    ``rayrag train-reranker`` does. (``model`` itself has no head: it only loads as a stand-in.)"""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rayrag.data.beir import load_corpus
    from rayrag.losses import localized_contrastive

    docs = [d for d in load_corpus(corpus).values() if d.title][:24]
    tok = AutoTokenizer.from_pretrained(model)
    torch.manual_seed(1)
    net = AutoModelForSequenceClassification.from_pretrained(model, num_labels=1)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    for step in range(steps):
        q = [docs[(step * 4 + i) % len(docs)] for i in range(4)]
        pairs = [(d.title, x.text) for d in q for x in (d, docs[(docs.index(d) + 7) % len(docs)])]  # [pos, neg]
        enc = tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, truncation=True, max_length=128,
                  return_tensors="pt")
        loss = localized_contrastive(net(**enc).logits.view(-1, 2))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.save_pretrained(folder)
    tok.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]
    return folder


def make_sparse_index(model: Path, corpus: Path, folder: Path, max_length: int = 128) -> Path:
    """An inverted index over ``corpus`` encoded with ``model`` as a SPLADE document encoder,
    saved as the index job saves one (the frozen-encoder index a DiSCo student searches)."""
    from rayrag.data.beir import load_corpus
    from rayrag.index.sparse_index import InvertedIndex
    from rayrag.index.store import save_index
    from rayrag.io import sha256_file
    from rayrag.models.sparse import SpladeEncoder

    docs = load_corpus(corpus)
    ids = list(docs)
    enc = SpladeEncoder(str(model), max_length=max_length)  # 128: tiny_bert's position table
    matrix = enc.encode([docs[i].full_text for i in ids], progress=False)
    save_index(folder, "sparse", InvertedIndex(matrix), ids,
               {"model": str(model), "model_path": str(model), "model_version": "test", "dim": enc.vocab_size,
                "corpus": str(corpus), "corpus_sha256": sha256_file(corpus)})
    return folder


def make_reasoning_model(base: Path, folder: Path) -> Path:
    """An LREM export of ``base`` (a tiny causal LM) with the three tokens added and a short
    generation budget: an untrained stand-in, for plumbing tests only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rayrag.models.reasoning import ReasoningLimits, add_reasoning_tokens, save_reasoning

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    add_reasoning_tokens(tok, model)
    save_reasoning(model, tok, folder, ReasoningLimits(max_cot_tokens=6, max_new_tokens=8, max_doc_tokens=64))
    return folder
