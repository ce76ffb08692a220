"""The index job: embedding shards -> saved index, with lineage back to the encode run."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import to_dict
from ..encode.store import load_manifest, read_dense, read_sparse
from ..errors import ConfigError
from ..job import Job
from .faiss_index import FaissParams, build_faiss, gpu_count
from .store import save_index


@dataclass
class IndexConfig:
    embeddings: str = "out/encode-scifact-minilm"  # an encode output folder
    output_dir: str = "out/index-scifact-minilm-hnsw"
    faiss: FaissParams = field(default_factory=FaissParams)
    experiment: str = "rayrag"

    def validate(self) -> None:
        self.faiss.validate()
        if not self.embeddings or not self.output_dir:
            raise ConfigError("embeddings and output_dir are required")


def run_index(cfg: IndexConfig) -> dict:
    from .. import tracking

    emb = Path(cfg.embeddings).resolve()
    enc = load_manifest(emb)
    out = Path(cfg.output_dir).resolve()
    lineage = {"embeddings": str(emb), "encode_run_id": enc.get("mlflow_run_id"), "model": enc["model"],
               "model_version": enc["model_version"], "corpus": enc["corpus"],
               "corpus_sha256": enc["corpus_sha256"], "dim": enc["dim"]}
    tags = {"rayrag.model": enc["model"], "rayrag.encode_run_id": str(enc.get("mlflow_run_id"))}
    with tracking.job_run("index", to_dict(cfg), dataset=Path(enc["corpus"]).parent.name,
                          experiment=cfg.experiment, tags=tags) as jr:
        t0 = time.perf_counter()
        if enc["kind"] == "dense":
            cfg.faiss.validate(enc["dim"])
            ids, vectors = read_dense(emb)
            index = build_faiss(vectors, cfg.faiss)
            params = to_dict(cfg.faiss)
            kind = "dense"
        else:
            from .sparse_index import InvertedIndex

            ids, matrix = read_sparse(emb)
            index = InvertedIndex(matrix)
            params = {"kind": "inverted"}
            kind = "sparse"
        build_s = time.perf_counter() - t0
        manifest = save_index(out, kind, index, ids, {**lineage, "index": params, "build_s": build_s,
                                                      "gpu_used": bool(kind == "dense" and cfg.faiss.use_gpu and gpu_count()),
                                                      "mlflow_run_id": jr.run_id})
        jr.log_metrics({"build_s": build_s, "vectors": len(ids)})
        jr.log_artifact(out, "index")
        print(f"[index] {params.get('kind')} index over {len(ids)} vectors in {build_s:.1f}s -> {out}", flush=True)
        return manifest


JOB = Job(
    name="index", config=IndexConfig, run=run_index,
    help="build a FAISS or inverted index from encode output",
    description="Build Flat / HNSW / IVF-PQ (dense; faiss.kind=flat|hnsw|ivfpq) or an inverted index (sparse) "
                "from an encode output folder (embeddings=<folder>); saved with ids and a checksummed manifest.",
    flags=("output_dir",), summary=lambda cfg, m: f"index of {m['count']} vectors in {cfg.output_dir}")
