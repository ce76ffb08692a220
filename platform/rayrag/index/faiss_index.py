"""FAISS indexes over dense embedding shards: Flat (exact), HNSW, IVF-PQ with exact re-scoring.

All use inner product: rayrag's dense encoders L2-normalise, so this is cosine similarity.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

KINDS = ("flat", "hnsw", "ivfpq")


@dataclass
class FaissParams:
    kind: str = "hnsw"
    hnsw_m: int = 32  # graph degree
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nlist: int | None = None  # None: about 4 * sqrt(N)
    pq_m: int = 48  # sub-quantizers; must divide dim (384 / 48 = 8 dims each)
    pq_bits: int = 8
    nprobe: int = 32
    rescore: int = 16  # IVF-PQ: re-score rescore * k candidates exactly (0 = off); bench/ann.py: x4 -> 0.68, x16 -> 0.95 recall@10 at 1M
    train_size: int = 100_000  # vectors sampled to train IVF-PQ
    use_gpu: bool = True  # when faiss has GPUs (flat and IVF-PQ build/search)
    seed: int = 0

    def validate(self, dim: int | None = None) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"index kind must be one of {KINDS}, got {self.kind!r}")
        if dim is not None and self.kind == "ivfpq" and dim % self.pq_m:
            raise ConfigError(f"pq_m={self.pq_m} must divide the dimension {dim}")
        if self.hnsw_m < 2 or self.nprobe < 1 or self.rescore < 0 or self.train_size < 1:
            raise ConfigError("hnsw_m >= 2, nprobe >= 1, rescore >= 0, train_size >= 1 are required")


def gpu_count() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def build_faiss(vectors: np.ndarray, p: FaissParams):
    """Build an index over ``vectors`` [N, d] float32 (row i gets id i)."""
    p.validate(vectors.shape[1])
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    sample = None
    if p.kind == "ivfpq":
        sample = vectors[training_rows(len(vectors), p)]
    return fill_index(train_faiss(sample, vectors.shape[1], len(vectors), p), vectors, p)


def training_rows(n: int, p: FaissParams) -> np.ndarray:
    """Which of ``n`` rows train IVF-PQ, in training order: the same draw for a sharded build
    (which gathers them shard by shard) as for one index, so both train the same quantizer."""
    return np.random.default_rng(p.seed).choice(n, size=min(p.train_size, n), replace=False)


def train_faiss(sample: np.ndarray | None, dim: int, n_total: int, p: FaissParams):
    """The empty, trained index every shard starts from (a copy each): for IVF-PQ the coarse
    quantizer and PQ codebooks learnt on ``sample``, sized for ``n_total`` vectors in all shards,
    so scores from different shards are comparable; Flat and HNSW need no training."""
    import faiss

    p.validate(dim)
    if p.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if p.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, p.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = p.hnsw_ef_construction
        index.hnsw.efSearch = p.hnsw_ef_search
        return index
    nlist = p.ivf_nlist or max(1, min(int(4 * np.sqrt(n_total)), n_total // 39))  # FAISS wants >= 39 points per list
    quantizer = faiss.IndexFlatIP(dim)
    ivfpq = faiss.IndexIVFPQ(quantizer, dim, nlist, p.pq_m, p.pq_bits, faiss.METRIC_INNER_PRODUCT)
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    train_target = ivfpq
    if p.use_gpu and gpu_count():
        train_target = faiss.index_cpu_to_all_gpus(ivfpq)
    train_target.train(sample)
    if train_target is not ivfpq:
        ivfpq = faiss.index_gpu_to_cpu(train_target)
    ivfpq.nprobe = p.nprobe
    return ivfpq


def fill_index(trained, vectors: np.ndarray, p: FaissParams):
    """A copy of ``trained`` holding ``vectors`` (rows 0..n-1), with IVF-PQ's exact re-scoring."""
    import faiss

    index = faiss.clone_index(trained)
    if p.kind == "ivfpq" and p.rescore:
        # IndexRefineFlat keeps the exact vectors and re-ranks rescore*k PQ candidates.
        index = faiss.IndexRefineFlat(index)
        index.k_factor = float(p.rescore)
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def set_search_params(index, p: FaissParams) -> None:
    import faiss

    if hasattr(index, "set_params"):  # a ShardedIndex: every shard, wherever it runs
        index.set_params(p)
        return

    base = faiss.downcast_index(index.base_index) if isinstance(index, faiss.IndexRefine) else index
    if hasattr(base, "hnsw"):
        base.hnsw.efSearch = p.hnsw_ef_search
    if hasattr(base, "nprobe"):
        base.nprobe = p.nprobe
    if isinstance(index, faiss.IndexRefine):
        index.k_factor = float(p.rescore)


def search_faiss(index, queries: np.ndarray, k: int, use_gpu: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """-> (scores [Q, k], rows [Q, k]); rows of -1 mean fewer than k results."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    return index.search(q, min(k, index.ntotal))
