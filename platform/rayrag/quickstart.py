"""The quickstart pipeline: encode SciFact with Ray Data, index it, evaluate everything, serve it.

    encode minilm (Ray Data) -> Flat + HNSW indexes ─┐
    encode splade-tiny (Ray Data) -> inverted index ─┼─> evaluate: bm25, minilm (exact, Flat),
    bm25 (in the evaluate task) ─────────────────────┘   minilm+hnsw, splade-tiny, hybrids
    Flat index -> Ray Serve on 127.0.0.1 (docs/SERVE.md): one sample query, then a curl line
    -> the result table and what to run next

Every step is the same library call its own job makes, so each leaves its own MLflow run
(encode -> index -> evaluate, linked by run ids in the manifests).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .encode.pipeline import EncodeConfig
from .errors import ConfigError
from .eval.job import EvaluateConfig
from .index.build import IndexConfig
from .index.faiss_index import FaissParams
from .job import Job


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
    serve: bool = True  # end by serving the Flat index over HTTP
    serve_port: int = 8000  # 0: any free loopback port, picked when serving starts
    serve_query: str = "Vitamin D deficiency is linked to bone fractures."
    keep_serving: bool | None = None  # None: until Ctrl-C when run from a terminal, else stop after the sample

    def validate(self) -> None:
        if not self.output_dir:
            raise ConfigError("output_dir must not be empty")
        if self.num_actors < 1:
            raise ConfigError(f"num_actors must be >= 1, got {self.num_actors}")
        if not 0 <= self.serve_port < 65536:
            raise ConfigError(f"serve_port must be a TCP port, or 0 for any free one, got {self.serve_port}")


def run_quickstart(cfg: QuickstartConfig) -> dict:
    import ray

    from .data import dataset_dir, load_beir
    from .encode.pipeline import run_encode
    from .eval.job import run_evaluate
    from .index.build import run_index
    from .ray_utils import check_port_free, init_ray

    load_beir(dataset_dir(cfg.dataset, cfg.data_dir), cfg.split)  # bad data fails before any work
    if cfg.serve and cfg.serve_port:
        # and so does a busy port, not after minutes of encoding
        check_port_free("127.0.0.1", cfg.serve_port, "serve_port", "serve_port=0")
    out = Path(cfg.output_dir)
    common = dict(dataset=cfg.dataset, data_dir=cfg.data_dir, num_actors=cfg.num_actors, experiment=cfg.experiment)
    keep = cfg.serve and _keep_serving(cfg)
    started = init_ray()
    steps = 5 if cfg.serve else 4
    try:
        print(f"[quickstart] 1/{steps} encode {cfg.dataset} with {cfg.dense_model} (Ray Data)", flush=True)
        run_encode(EncodeConfig(model=cfg.dense_model, output_dir=str(out / "encode-dense"), **common))
        print(f"[quickstart] 2/{steps} build Flat and HNSW indexes", flush=True)
        for kind in ("flat", "hnsw"):
            run_index(IndexConfig(embeddings=str(out / "encode-dense"), output_dir=str(out / f"index-{kind}"),
                                  faiss=FaissParams(kind=kind), experiment=cfg.experiment))
        print(f"[quickstart] 3/{steps} encode {cfg.dataset} with {cfg.sparse_model} and build its inverted index", flush=True)
        # all terms kept (sparse_top_k=None): the inverted index then scores exactly like SPLADE
        run_encode(EncodeConfig(model=cfg.sparse_model, output_dir=str(out / "encode-sparse"), batch_size=16,
                                sparse_top_k=None, **common))
        run_index(IndexConfig(embeddings=str(out / "encode-sparse"), output_dir=str(out / "index-sparse"),
                              experiment=cfg.experiment))
        flat, hnsw, sparse = (f"index:{(out / n).resolve()}" for n in ("index-flat", "index-hnsw", "index-sparse"))
        d, s = cfg.dense_model, cfg.sparse_model
        print(f"[quickstart] 4/{steps} evaluate", flush=True)
        result = run_evaluate(EvaluateConfig(
            dataset=cfg.dataset, split=cfg.split, data_dir=cfg.data_dir, output_dir=str(out / "evaluate"),
            experiment=cfg.experiment, cpus_per_retriever=0.5,
            retrievers=["bm25", f"{d}={flat}", f"{d}+hnsw={hnsw}", f"{s}={sparse}",
                        f"hybrid(bm25,{d})=hybrid(bm25,{flat})", f"rrf(bm25,{d})=rrf(bm25,{flat})"]))
        if cfg.serve:
            print(f"[quickstart] 5/{steps} serve the Flat index with Ray Serve", flush=True)
            _serve_or_report(cfg, result, out / "index-flat")
        if keep:  # the table now: what follows is serving until Ctrl-C
            print_summary(cfg, result)
            _wait_for_ctrl_c(result["serve"]["url"])
    finally:
        if cfg.serve:
            from ray import serve

            if ray.is_initialized():
                serve.shutdown()
        if started:
            ray.shutdown()
    if not keep:  # after Ray's shutdown messages, so the table is the last thing said
        print_summary(cfg, result)
    return result


def _serve_or_report(cfg: QuickstartConfig, result: dict, index: Path) -> None:
    """Step 5. Steps 1-4 took minutes and are recorded: if serving fails (say, another process took
    ``serve_port`` meanwhile), the user still gets their table, then the error."""
    try:
        result["serve"] = _serve(cfg, index)
    except Exception:
        print_summary(cfg, result)
        print(f"\n[quickstart] serving failed (the error follows); the evaluation above is complete in "
              f"{cfg.output_dir}/evaluate/", flush=True)
        raise


def _serve(cfg: QuickstartConfig, index: Path) -> dict:
    """Deploy the Serve app on this Ray, answer one query over HTTP, print a curl line to paste."""
    import httpx

    from .serve.config import Auth, ServeConfig
    from .serve.local import curl_line, start

    # No reranker: only a trained one is ever served (train one, then serve it from the registry:
    # docs/SERVE.md). Loopback and no key: only this machine can reach it.
    scfg = ServeConfig(index=str(index.resolve()), reranker=None, auth=Auth(api_key_env=None))
    url = start(scfg, port=cfg.serve_port)  # 0: start() picks a free port as it binds
    r = httpx.post(f"{url}/search", json={"query": cfg.serve_query, "k": 3}, timeout=60)
    r.raise_for_status()
    hits = r.json()["results"]
    print(f"\n[quickstart] POST {url}/search {cfg.serve_query!r} ->")
    for h in hits:
        print(f"  {h['rank']}. [{h['id']}] ({h['score']:.3f}, {h['stage']}) {h['title'][:90]}")
    line = curl_line(url, cfg.serve_query, k=3)
    print(f"\n  {line}\n  API: {url}/docs  (embeddings: {url}/v1/embeddings; no reranker is served)", flush=True)
    return {"url": url, "query": cfg.serve_query, "results": [h["id"] for h in hits], "curl": line}


def _keep_serving(cfg: QuickstartConfig) -> bool:
    import sys

    return sys.stdin.isatty() if cfg.keep_serving is None else cfg.keep_serving


def _wait_for_ctrl_c(url: str) -> None:
    import time

    print(f"\n[quickstart] serving on {url} until Ctrl-C", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


NEXT_STEPS = """\
Next (after `source .venv/bin/activate`):
  serve it:    python -m jobs.serve run --config jobs/configs/serve/scifact.yaml
  train:       python -m jobs.mine --config jobs/configs/mine_scifact_bm25.yaml
               python -m jobs.train_dense --config jobs/configs/train_scifact_minilm.yaml
  evaluate:    python -m jobs.evaluate --config jobs/configs/evaluate_scifact.yaml
  more:        rayrag --help, README.md, docs/SERVE.md"""


def print_summary(cfg: QuickstartConfig, result: dict) -> None:
    """The result table, where everything went, and what to run next: the quickstart's last words."""
    from .eval.report import format_table

    print("\n" + format_table(result))
    print(f"\nwrote {cfg.output_dir}/: encode-*/ (embedding shards), index-*/ (FAISS, inverted), "
          f"evaluate/result.json and evaluate/runs/*.trec")
    print(f"MLflow run {result['mlflow_run_id']} in {result['tracking_uri']}")
    if result["tracking_uri"].startswith("sqlite:"):
        print(f"  browse it: mlflow ui --backend-store-uri {result['tracking_uri']} --host 127.0.0.1")
    print("\n" + NEXT_STEPS, flush=True)


JOB = Job(
    name="quickstart", config=QuickstartConfig, run=run_quickstart,
    help="SciFact end to end: encode, index, evaluate, serve",
    description="Encode SciFact with Ray Data (MiniLM, SPLADE-tiny), build Flat/HNSW/inverted indexes, evaluate "
                "BM25, dense, sparse and hybrid retrieval, print a table, and serve the Flat index over HTTP.",
    flags=("data_dir", "output_dir"))
