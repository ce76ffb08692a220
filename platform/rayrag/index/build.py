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
    # None: one index. N: a sharded index of N shards (document ranges of the encode shards),
    # searched in parallel and merged exactly; with append, the number of shards to add.
    shards: int | None = None
    append: bool = False  # add `embeddings` to the sharded index in output_dir as new shards
    passages: bool = True  # store the passage text beside the index (served memory-mapped)
    experiment: str = "rayrag"

    def validate(self) -> None:
        self.faiss.validate()
        if not self.embeddings or not self.output_dir:
            raise ConfigError("embeddings and output_dir are required")
        if self.shards is not None and (type(self.shards) is not int or self.shards < 1):
            raise ConfigError(f"shards must be a positive integer (or null for one index), got {self.shards!r}")


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
        build = _run_sharded if cfg.shards is not None or cfg.append else _run_single
        manifest = build(cfg, emb, enc, out, {**lineage, "mlflow_run_id": jr.run_id})
        build_s = time.perf_counter() - t0
        jr.log_metrics({"build_s": build_s, "vectors": manifest["count"]})
        jr.log_artifact(out, "index")
        print(f"[index] {manifest['index'].get('kind')} index over {manifest['count']} vectors in {build_s:.1f}s "
              f"-> {out}" + (f" ({len(manifest['shards'])} shards)" if "shards" in manifest else ""), flush=True)
        return manifest


def _run_single(cfg: IndexConfig, emb: Path, enc: dict, out: Path, lineage: dict) -> dict:
    t0 = time.perf_counter()
    if enc["kind"] == "dense":
        cfg.faiss.validate(enc["dim"])
        ids, vectors = read_dense(emb)
        index = build_faiss(vectors, cfg.faiss)
        params = to_dict(cfg.faiss)
    else:
        from .sparse_index import InvertedIndex

        ids, matrix = read_sparse(emb)
        index = InvertedIndex(matrix)
        params = {"kind": "inverted"}
    build_s = time.perf_counter() - t0
    corpus = _corpus(enc, ids) if cfg.passages else None
    return save_index(out, enc["kind"], index, ids, {
        **lineage, "index": params, "build_s": build_s,
        "gpu_used": bool(enc["kind"] == "dense" and cfg.faiss.use_gpu and gpu_count())}, corpus)


def _corpus(enc: dict, ids: list[str]):
    """The indexed documents' text, from the corpus the encode job read (checksum checked)."""
    from .passages import load_passages

    return load_passages(Path(enc["corpus"]), enc.get("corpus_sha256"), ids)


def _run_sharded(cfg: IndexConfig, emb: Path, enc: dict, out: Path, lineage: dict) -> dict:
    from .shard_build import append_shards, build_sharded

    # loaded only once the cheap checks (model, clashes) have passed
    corpus = (lambda ids: _corpus(enc, ids)) if cfg.passages else None
    if cfg.append:
        return append_shards(emb, enc, out, cfg.shards or 1, lineage, corpus)
    params = {"kind": "inverted"}
    if enc["kind"] == "dense":
        cfg.faiss.validate(enc["dim"])
        params = to_dict(cfg.faiss)
    return build_sharded(emb, enc, out, cfg.shards, cfg.faiss if enc["kind"] == "dense" else None,
                         {**lineage, "index": params}, corpus)


JOB = Job(
    name="index", config=IndexConfig, run=run_index,
    help="build a FAISS or inverted index from encode output",
    description="Build Flat / HNSW / IVF-PQ (dense; faiss.kind=flat|hnsw|ivfpq) or an inverted index (sparse) "
                "from an encode output folder (embeddings=<folder>); saved with ids, the passages and a checksummed "
                "manifest. shards=N writes N shards searched in parallel and merged exactly; append=true "
                "adds an encode output to a sharded index as new shards.",
    flags=("output_dir",), summary=lambda cfg, m: f"index of {m['count']} vectors in {cfg.output_dir}")
