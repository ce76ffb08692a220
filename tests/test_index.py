"""FAISS and inverted indexes: recall against exact search, save/load checks, damage detection."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

from rayrag.errors import ConfigError, DataError
from rayrag.index.faiss_index import FaissParams, build_faiss, search_faiss
from rayrag.index.sparse_index import InvertedIndex
from rayrag.index.store import load_index, save_index
from rayrag.index.topk import top_k_rows


def test_top_k_rows_orders_by_score_then_column():
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [3.0, 2.0, 1.0, 0.0]])
    idx, vals = top_k_rows(scores, 3)
    assert idx.tolist() == [[1, 3, 2], [0, 1, 2]]
    assert vals.tolist() == [[0.9, 0.9, 0.5], [3.0, 2.0, 1.0]]
    assert top_k_rows(scores, 10)[0].shape == (2, 4)


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    centers = _unit(rng, 50, 64)
    # clustered like real text embeddings (isotropic high-d noise would defeat any IVF index)
    docs = centers[rng.integers(0, 50, 5000)] + 0.05 * rng.standard_normal((5000, 64)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = docs[rng.choice(5000, 100, replace=False)] + 0.02 * rng.standard_normal((100, 64)).astype(np.float32)
    return docs, queries.astype(np.float32)


@pytest.mark.parametrize("kind, min_recall", [("flat", 1.0), ("hnsw", 0.95), ("ivfpq", 0.95)])
def test_faiss_recall_against_exact(vectors, kind, min_recall):
    docs, queries = vectors
    exact, _ = top_k_rows(queries @ docs.T, 10)
    index = build_faiss(docs, FaissParams(kind=kind, pq_m=16, nprobe=16, rescore=8))
    _, rows = search_faiss(index, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, rows)])
    assert recall >= min_recall, f"{kind} recall@10 {recall:.3f}"


def test_ivfpq_rescoring_returns_exact_scores(vectors):
    docs, queries = vectors
    index = build_faiss(docs, FaissParams(kind="ivfpq", pq_m=16, nprobe=16, rescore=8))
    scores, rows = search_faiss(index, queries[:5], 3)
    assert np.allclose(scores, np.einsum("qd,qkd->qk", queries[:5], docs[rows]), atol=1e-5)


def test_pq_m_must_divide_dim():
    with pytest.raises(ConfigError, match="must divide the dimension 64"):
        build_faiss(np.zeros((100, 64), np.float32), FaissParams(kind="ivfpq", pq_m=48))


def test_inverted_index_equals_exact_sparse_scoring():
    docs = sp.random(2000, 3000, density=0.01, random_state=1, format="csr", dtype=np.float32)
    queries = sp.random(50, 3000, density=0.005, random_state=2, format="csr", dtype=np.float32)
    rows, scores = InvertedIndex(docs).search(queries, 20)
    exact = (queries @ docs.T).toarray()
    e_rows, e_scores = top_k_rows(exact, 20)
    assert np.allclose(scores, e_scores, atol=1e-6) and (rows == e_rows).all()


@pytest.fixture
def saved_dense(tmp_path, vectors):
    docs, _ = vectors
    ids = [f"d{i}" for i in range(len(docs))]
    save_index(tmp_path / "idx", "dense", build_faiss(docs, FaissParams(kind="flat")), ids, {"dim": 64, "model": "m"})
    return tmp_path / "idx"


def test_saved_index_round_trip(saved_dense, vectors):
    loaded = load_index(saved_dense, expected_dim=64)
    assert loaded.ids[:2] == ["d0", "d1"] and loaded.index.ntotal == 5000
    assert not [p for p in saved_dense.iterdir() if p.name.startswith(".")]


def test_damaged_or_mismatched_index_fails_clearly(saved_dense):
    with pytest.raises(DataError, match="does not match the query encoder's 384"):
        load_index(saved_dense, expected_dim=384)
    data = bytearray((saved_dense / "index.faiss").read_bytes())
    data[-10] ^= 0xFF
    (saved_dense / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum mismatch"):
        load_index(saved_dense)


def test_missing_id_map_and_manifest(saved_dense):
    (saved_dense / "ids.txt").unlink()
    with pytest.raises(DataError, match="ids.txt is missing"):
        load_index(saved_dense)
    (saved_dense / "manifest.json").unlink()
    with pytest.raises(DataError, match="no manifest.json"):
        load_index(saved_dense)


def test_id_count_mismatch(saved_dense):
    import hashlib

    ids = saved_dense / "ids.txt"
    ids.write_text("\n".join(ids.read_text().split("\n")[:-2]) + "\n")
    m = json.loads((saved_dense / "manifest.json").read_text())
    m["files"]["ids.txt"] = hashlib.sha256(ids.read_bytes()).hexdigest()  # a consistent but short id map
    (saved_dense / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match="index holds 5000 vectors but ids.txt has 4999"):
        load_index(saved_dense)
