"""The encode job: corpus -> Ray Data actor pool -> embedding shards + manifest.

Resumable and idempotent: the corpus is cut into deterministic shards (``shards.py``), each
shard is committed atomically (``store.py``), and a restarted job only hands unfinished
shards to the actors. A job whose manifest already exists for the same plan returns at once.
"""
from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from ..config import to_dict
from ..errors import ConfigError, DataError
from ..io import atomic_write_json, sha256_folder
from ..job import Job
from .shards import plan_shards
from .store import clean_temp_files, finished_shard, prepare_output


@dataclass
class EncodeConfig:
    model: str = "minilm"  # built-in name, folder or HF id
    kind: str | None = None  # "dense" | "sparse"; None: from the built-in's kind
    dataset: str | None = "scifact"  # encodes <data dir>/<dataset>/corpus.jsonl ...
    corpus: str | None = None  # ... unless a corpus file (.jsonl or .parquet) is given
    data_dir: str | None = None
    output_dir: str = "out/encode"
    docs_per_shard: int = 512  # unit of resume and of work handed to an actor
    batch_size: int = 64  # texts per forward pass, sorted by length inside a shard
    max_length: int | None = None  # None: the model's own
    num_actors: int = 2  # encoder replicas in the actor pool
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    threads_per_actor: int | None = None  # torch threads; None: round(cpus_per_actor)
    sparse_top_k: int | None = 256  # SPLADE: keep the k heaviest terms of each document
    overwrite: bool = False  # start over when output_dir holds a different plan
    experiment: str = "rayrag"

    def validate(self) -> None:
        if self.kind not in (None, "dense", "sparse"):
            raise ConfigError(f"kind must be dense or sparse, got {self.kind!r}")
        if not self.dataset and not self.corpus:
            raise ConfigError("give dataset=<name> or corpus=<path to .jsonl/.parquet>")
        for key in ("docs_per_shard", "batch_size", "num_actors"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.cpus_per_actor <= 0 or self.gpus_per_actor < 0:
            raise ConfigError("cpus_per_actor must be > 0 and gpus_per_actor >= 0")
        if self.sparse_top_k is not None and self.sparse_top_k < 1:
            raise ConfigError(f"sparse_top_k must be >= 1 or null, got {self.sparse_top_k}")


def model_fingerprint(path: str) -> str:
    """sha256 over the config and weight files: changes whenever the weights change."""
    return sha256_folder(path, lambda f: f.name == "config.json" or f.suffix in (".safetensors", ".bin", ".pt"))


def _model_info(cfg: EncodeConfig) -> dict:
    from transformers import AutoConfig

    from ..assets import resolve_model
    from ..models.reasoning import is_reasoning_model

    resolved = resolve_model(cfg.model)
    reasoning = is_reasoning_model(resolved.path)
    if reasoning and cfg.kind == "sparse":
        raise ConfigError(f"model {cfg.model!r} is a reasoning embedder (LREM): its documents are dense vectors, "
                          f"not kind=sparse")
    kind = cfg.kind or ("dense" if reasoning else {"dense": "dense", "splade": "sparse"}.get(resolved.kind or "", None))
    if kind is None:
        raise ConfigError(f"model {cfg.model!r}: say kind=dense or kind=sparse")
    hf = AutoConfig.from_pretrained(resolved.path)
    dim = int(hf.hidden_size if kind == "dense" else hf.vocab_size)
    return {"model": cfg.model, "model_path": resolved.path, "model_version": model_fingerprint(resolved.path),
            "kind": kind, "dim": dim, **({"reasoning": True} if reasoning else {})}


def _corpus_path(cfg: EncodeConfig) -> Path:
    if cfg.corpus:
        return Path(cfg.corpus)
    from ..data.locate import dataset_dir

    return dataset_dir(cfg.dataset, cfg.data_dir) / "corpus.jsonl"


def _check_unique_ids(out: Path, infos: list[dict]) -> None:
    import pyarrow.parquet as pq

    seen: set[str] = set()
    for info in infos:
        for doc_id in pq.read_table(out / info["file"], columns=["id"]).column("id").to_pylist():
            if doc_id in seen:
                raise DataError(f"duplicate document id {doc_id!r} in the corpus (found in {info['file']})")
            seen.add(doc_id)


def run_encode(cfg: EncodeConfig) -> dict:
    import ray
    from tqdm.auto import tqdm

    from .. import tracking
    from ..ray_utils import CPU_WORKER_MALLOC_ENV, init_ray, rows_in_this_thread
    from .actor import ShardEncoder

    corpus = _corpus_path(cfg)
    model = _model_info(cfg)
    plan = plan_shards(corpus, cfg.docs_per_shard)
    out = Path(cfg.output_dir).resolve()
    plan_record = {"corpus": plan.corpus, "corpus_sha256": plan.corpus_sha256, "num_docs": plan.num_docs,
                   "docs_per_shard": cfg.docs_per_shard, "max_length": cfg.max_length,
                   "sparse_top_k": cfg.sparse_top_k if model["kind"] == "sparse" else None,
                   **{k: model[k] for k in ("model", "model_version", "kind", "dim")}}
    done = prepare_output(out, plan_record, cfg.overwrite)
    if done is not None:
        print(f"[encode] {out} is already complete ({done['count']} vectors); nothing to do", flush=True)
        return done
    pending = [s for s in plan.shards if finished_shard(out, s.index, s.count) is None]
    print(f"[encode] {plan.num_docs} docs in {len(plan.shards)} shards; {len(pending)} to encode "
          f"({len(plan.shards) - len(pending)} already done)", flush=True)

    started = init_ray()
    t0 = time.perf_counter()
    try:
        with tracking.job_run("encode", to_dict(cfg), dataset=cfg.dataset or Path(plan.corpus).name,
                              experiment=cfg.experiment, tags={"rayrag.model": cfg.model}) as jr:
            if pending:
                ctx = ray.data.DataContext.get_current()
                ctx.enable_progress_bars = False  # one bar below, in documents
                threads = cfg.threads_per_actor or max(1, int(round(cfg.cpus_per_actor)))
                ds = ray.data.from_items([s.to_dict() for s in pending], override_num_blocks=len(pending))
                encoded = ds.map_batches(
                    ShardEncoder, batch_size=1, batch_format="numpy",
                    compute=ray.data.ActorPoolStrategy(size=min(cfg.num_actors, len(pending))),
                    num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor or None,
                    # merged with the job's runtime_env (a submitted job keeps its working dir)
                    **({} if cfg.gpus_per_actor else {"runtime_env": {"env_vars": CPU_WORKER_MALLOC_ENV}}),
                    fn_constructor_kwargs=dict(model=cfg.model, kind=model["kind"], out=str(out),
                                               batch_size=cfg.batch_size, max_length=cfg.max_length,
                                               threads=threads, sparse_top_k=cfg.sparse_top_k))
                with tqdm(total=sum(s.count for s in pending), desc="encode", unit="doc") as bar, \
                        closing(rows_in_this_thread(encoded)) as rows:
                    for row in rows:
                        bar.update(int(row["count"]))
            wall = time.perf_counter() - t0
            infos = []
            for s in plan.shards:
                info = finished_shard(out, s.index, s.count)
                if info is None:
                    raise DataError(f"shard {s.index} did not finish; run the job again to resume")
                infos.append(info)
            _check_unique_ids(out, infos)
            manifest = {**model, "dtype": "float32", "count": sum(i["count"] for i in infos),
                        "shards": infos, "corpus": plan.corpus, "corpus_sha256": plan.corpus_sha256,
                        "format": "dense: id, vector[dim]" if model["kind"] == "dense"
                        else "sparse: id, indices[], values[]", "config": to_dict(cfg),
                        "mlflow_run_id": jr.run_id}
            atomic_write_json(out / "manifest.json", manifest)
            docs = sum(s.count for s in pending)
            jr.log_metrics({"docs": manifest["count"], "docs_encoded_now": docs, "wall_s": wall,
                            "docs_per_s": docs / wall if wall > 0 and docs else 0.0})
            jr.log_artifact(out / "manifest.json")
            print(f"[encode] wrote {manifest['count']} vectors to {out} in {wall:.1f}s", flush=True)
            return manifest
    finally:
        if started:
            ray.shutdown()
            # the actors are gone with this Ray: a shard one was writing when the job was stopped
            # (Ctrl-C, SIGTERM) left its temp file; remove it now rather than at the next run
            clean_temp_files(out)


def _summary(cfg: EncodeConfig, manifest: dict) -> str:
    return (f"{manifest['count']} {manifest['kind']} vectors (dim {manifest['dim']}) in {cfg.output_dir}; "
            "manifest.json written")


JOB = Job(
    name="encode", config=EncodeConfig, run=run_encode,
    help="encode a corpus into embedding shards with Ray Data",
    description="Stream a corpus through a Ray Data actor pool of encoders into resumable Parquet shards plus "
                "a manifest. The corpus is the dataset's corpus.jsonl, or corpus=<file .jsonl or .parquet>.",
    flags=("model", "dataset", "data_dir", "output_dir"), summary=_summary)
