"""The quickstart pipeline: encode SciFact with Ray Data, index it, evaluate everything.

    encode minilm (Ray Data) -> Flat + HNSW indexes ─┐
    encode splade-tiny (Ray Data) -> inverted index ─┼─> evaluate: bm25, minilm (exact, Flat),
    bm25 (in the evaluate task) ─────────────────────┘   minilm+hnsw, splade-tiny, hybrids

Every step is the same library call its own job makes, so each leaves its own MLflow run
(encode -> index -> evaluate, linked by run ids in the manifests).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .encode.config import EncodeConfig
from .errors import ConfigError
from .eval.config import EvaluateConfig
from .index.build import IndexConfig
from .index.faiss_index import FaissParams


@dataclass
class QuickstartConfig:
    dataset: str = "scifact"
    split: str = "test"
    data_dir: str | None = None
    output_dir: str = "out/quickstart"
    dense_model: str = "minilm"
    sparse_model: str = "splade-tiny"
    num_actors: int = 2
    experiment: str = "rayrag"

    def validate(self) -> None:
        if not self.output_dir:
            raise ConfigError("output_dir must not be empty")
        if self.num_actors < 1:
            raise ConfigError(f"num_actors must be >= 1, got {self.num_actors}")


def run_quickstart(cfg: QuickstartConfig) -> dict:
    import ray

    from .data import dataset_dir, load_beir
    from .encode.pipeline import run_encode
    from .eval.job import run_evaluate
    from .index.build import run_index
    from .ray_utils import init_ray

    load_beir(dataset_dir(cfg.dataset, cfg.data_dir), cfg.split)  # bad data fails before any work
    out = Path(cfg.output_dir)
    common = dict(dataset=cfg.dataset, data_dir=cfg.data_dir, num_actors=cfg.num_actors, experiment=cfg.experiment)
    started = init_ray()
    try:
        print(f"[quickstart] 1/4 encode {cfg.dataset} with {cfg.dense_model} (Ray Data)", flush=True)
        run_encode(EncodeConfig(model=cfg.dense_model, output_dir=str(out / "encode-dense"), **common))
        print("[quickstart] 2/4 build Flat and HNSW indexes", flush=True)
        for kind in ("flat", "hnsw"):
            run_index(IndexConfig(embeddings=str(out / "encode-dense"), output_dir=str(out / f"index-{kind}"),
                                  faiss=FaissParams(kind=kind), experiment=cfg.experiment))
        print(f"[quickstart] 3/4 encode {cfg.dataset} with {cfg.sparse_model} and build its inverted index", flush=True)
        # all terms kept (sparse_top_k=None): the inverted index then scores exactly like SPLADE
        run_encode(EncodeConfig(model=cfg.sparse_model, output_dir=str(out / "encode-sparse"), batch_size=16,
                                sparse_top_k=None, **common))
        run_index(IndexConfig(embeddings=str(out / "encode-sparse"), output_dir=str(out / "index-sparse"),
                              experiment=cfg.experiment))
        flat, hnsw, sparse = (f"index:{(out / n).resolve()}" for n in ("index-flat", "index-hnsw", "index-sparse"))
        d, s = cfg.dense_model, cfg.sparse_model
        print("[quickstart] 4/4 evaluate", flush=True)
        return run_evaluate(EvaluateConfig(
            dataset=cfg.dataset, split=cfg.split, data_dir=cfg.data_dir, output_dir=str(out / "evaluate"),
            experiment=cfg.experiment, cpus_per_retriever=0.5,
            retrievers=["bm25", f"{d}={flat}", f"{d}+hnsw={hnsw}", f"{s}={sparse}",
                        f"hybrid(bm25,{d})=hybrid(bm25,{flat})", f"rrf(bm25,{d})=rrf(bm25,{flat})"]))
    finally:
        if started:
            ray.shutdown()
