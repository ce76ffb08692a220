"""The rewrite job: a standalone rewrite of every conversational turn, for DiSCo's teacher.

DiSCo (Lupart et al., 2024, arXiv 2410.14609) trains a conversational retriever to match a
teacher that scores passages with a standalone rewrite of the turn; MTRAG's human rewrites are one
such teacher, and this job writes others with a configurable rewriter (``rewriters.py``): a local
causal LM (``model=smollm2-135m``, an HF id or a folder) in a Ray Data actor pool, or an
OpenAI-compatible chat endpoint (``model=null endpoint=http://host:port/v1``), never both.

Flow (the encode job's shape and helpers, ``encode/store.py``)::

    turns (mtrag-human | mtragun-human) --cut--> shards of turns_per_shard --Ray Data actors-->
        shards/shard-NNNNN.parquet + .json (committed one by one) --> rewrite.jsonl + manifest.json

``rewrite.jsonl`` has the layout of MTRAG's ``*_rewrite.jsonl`` (``{"_id":"<conv><::><turn>",
"text":"|user|: <rewrite>"}``, one line per turn in input order). A rerun resumes: finished shards
are kept; the same output folder with other settings is refused unless ``overwrite=true``.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ..config import to_dict
from ..errors import ConfigError, DataError, RayragError
from ..job import Job

SOURCES = ("mtrag-human", "mtragun-human")
OUTPUT_FILE = "rewrite.jsonl"
# Settings a rerun may change and still resume: where and how fast it runs, not what it writes.
# (batch_size is among them: with left padding, greedy outputs can differ in the last float bits.)
_RUNTIME = {"data_dir", "output_dir", "batch_size", "num_actors", "cpus_per_actor", "gpus_per_actor",
            "threads_per_actor", "timeout_s", "max_retries", "concurrency", "api_key_env", "overwrite",
            "experiment"}


@dataclass
class RewriteConfig:
    source: str = "mtrag-human"  # mtrag-human (777 turns) | mtragun-human (332 turns, with agent turns)
    domains: list[str] = field(default_factory=lambda: ["clapnq", "cloud", "fiqa", "govt"])
    limit: int | None = None  # the first N turns after the domain filter (quick runs)
    with_agent: bool = False  # show agent turns to the rewriter (mtragun-human has them)
    data_dir: str | None = None
    output_dir: str = "out/rewrite/mtrag"
    # The rewriter: exactly one of model (built-in name, HF id or folder) and endpoint (.../v1).
    model: str | None = None
    endpoint: str | None = None
    endpoint_model: str | None = None  # the model name the endpoint serves (required with endpoint)
    api_key_env: str | None = None  # NAME of the environment variable holding the endpoint's key
    max_new_tokens: int = 64  # a rewrite is one question; this bounds generation time
    max_input_tokens: int = 1024  # model only: oldest turns are dropped to fit (the formatter's rule)
    batch_size: int = 8  # prompts per generate() call
    turns_per_shard: int = 32  # unit of resume and of work handed to an actor
    num_actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    threads_per_actor: int | None = None  # torch threads; None: round(cpus_per_actor)
    timeout_s: float = 60.0  # endpoint: per request
    max_retries: int = 3  # endpoint: retries after a 5xx, 429 or connection error
    concurrency: int = 4  # endpoint: requests in flight per actor
    overwrite: bool = False  # start over when output_dir holds rewrites made with other settings
    experiment: str = "rayrag"

    def validate(self) -> None:
        from ..data.mtrag import DOMAINS

        if self.source not in SOURCES:
            raise ConfigError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        bad = [d for d in self.domains if d not in DOMAINS]
        if bad or not self.domains:
            raise ConfigError(f"unknown domain(s) {bad or '(none given)'}; valid: {', '.join(DOMAINS)}")
        if self.with_agent and self.source == "mtrag-human":
            raise ConfigError("with_agent=true needs source=mtragun-human: mtrag-human holds user turns only")
        if bool(self.model) == bool(self.endpoint):
            raise ConfigError("give exactly one rewriter: model=<built-in, HF id or folder> or "
                              f"model=null endpoint=<http://host:port/v1> (got model={self.model!r}, "
                              f"endpoint={self.endpoint!r})")
        if self.endpoint:
            url = urlparse(self.endpoint)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ConfigError(f"endpoint must be an http(s) URL such as http://127.0.0.1:8000/v1, "
                                  f"got {self.endpoint!r}")
            if not self.endpoint_model:
                raise ConfigError("endpoint needs endpoint_model=<the model name the server serves>")
        elif self.endpoint_model or self.api_key_env:
            raise ConfigError("endpoint_model and api_key_env apply only with endpoint=")
        if not 1 <= self.max_new_tokens <= 512:
            raise ConfigError(f"max_new_tokens must be in [1, 512] (a rewrite is one question), "
                              f"got {self.max_new_tokens}")
        for key in ("max_input_tokens", "batch_size", "turns_per_shard", "num_actors", "concurrency"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1 or null, got {self.limit}")
        if self.cpus_per_actor <= 0 or self.gpus_per_actor < 0 or self.timeout_s <= 0 or self.max_retries < 0:
            raise ConfigError("cpus_per_actor and timeout_s must be > 0; gpus_per_actor and max_retries >= 0")


def load_turns(cfg: RewriteConfig) -> list:
    """The turns to rewrite, in a fixed order (domain order, then file order)."""
    from ..data.locate import dataset_dir
    from ..data.mtrag import load_human_tasks, load_mtragun

    root = dataset_dir("mtrag", cfg.data_dir)
    if cfg.source == "mtrag-human":
        turns = load_human_tasks(root, cfg.domains)
    else:
        by_domain = {d: [] for d in cfg.domains}
        for t in load_mtragun(root):
            if t.domain in by_domain:
                by_domain[t.domain].append(t)
        turns = [t for d in cfg.domains for t in by_domain[d]]
    turns = turns[:cfg.limit] if cfg.limit else turns
    if not turns:
        raise DataError(f"no {cfg.source} turns in domains {cfg.domains}")
    return turns


def _api_key(cfg: RewriteConfig) -> str | None:
    if not cfg.api_key_env:
        return None
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise ConfigError(f"api_key_env={cfg.api_key_env}: that environment variable is not set")
    return key


def _rewriter(cfg: RewriteConfig) -> tuple[dict, dict]:
    """(what identifies the rewriter in the manifest, the actor's constructor arguments)."""
    common = {"max_new_tokens": cfg.max_new_tokens, "with_agent": cfg.with_agent}
    if cfg.endpoint:
        ident = {"endpoint": cfg.endpoint, "endpoint_model": cfg.endpoint_model}
        args = {"kind": "endpoint", "url": cfg.endpoint, "model": cfg.endpoint_model, "api_key": _api_key(cfg),
                "timeout_s": cfg.timeout_s, "max_retries": cfg.max_retries, "concurrency": cfg.concurrency}
    else:
        from ..assets import resolve_model
        from ..encode.pipeline import model_fingerprint

        path = resolve_model(cfg.model).path  # a bad name fails here, before Ray starts
        ident = {"model": cfg.model, "model_version": model_fingerprint(path), "max_input_tokens": cfg.max_input_tokens}
        args = {"kind": "model", "path": path, "max_input_tokens": cfg.max_input_tokens, "batch_size": cfg.batch_size}
    return {**ident, **common}, {**args, **common}


def _plan(cfg: RewriteConfig, turns: list) -> tuple[dict, list[dict]]:
    items = [[t.qid, [list(m) for m in t.messages]] for t in turns]
    n = cfg.turns_per_shard
    shards = [{"index": i // n, "items": json.dumps(items[i:i + n])} for i in range(0, len(items), n)]
    digest = hashlib.sha256(json.dumps(items).encode()).hexdigest()
    return {"input_sha256": digest, "count": len(items)}, shards


def write_rewrite_file(path: Path, rows: list[tuple[str, str]]) -> str:
    """``*_rewrite.jsonl`` layout (compact JSON, as MTRAG publishes it); returns its sha256."""
    from ..data.conversation import USER, format_conversation
    from ..io import atomic_open, sha256_file

    with atomic_open(path) as f:
        for qid, text in rows:
            f.write(json.dumps({"_id": qid, "text": format_conversation([(USER, text)])}, separators=(",", ":")) + "\n")
    return sha256_file(path)


def load_rewrites(path: str | Path) -> dict[str, str]:
    """qid -> rewrite text (without the ``|user|: `` prefix) from a finished output folder (checked
    against its manifest's sha256) or from any ``*_rewrite.jsonl`` file, MTRAG's own included."""
    from ..data.conversation import ConversationError, parse_conversation
    from ..data.jsonl import read_jsonl, require_file
    from ..io import sha256_file

    path = Path(path)
    if path.is_dir():
        manifest = require_file(path / "manifest.json", "rewrite job manifest (is the job finished?)")
        file = path / json.loads(manifest.read_text())["file"]
        if sha256_file(require_file(file, "rewrite file")) != json.loads(manifest.read_text())["sha256"]:
            raise DataError(f"{file}: checksum differs from {manifest} (changed since the job wrote it)")
        path = file
    out: dict[str, str] = {}
    for lineno, obj in read_jsonl(require_file(path, "rewrite file")):
        qid, text = obj.get("_id"), obj.get("text")
        try:
            turns = parse_conversation(text) if isinstance(text, str) else []
        except ConversationError:
            turns = []
        if not isinstance(qid, str) or len(turns) != 1 or turns[0][0] != "user" or qid in out:
            raise DataError(f"{path}:{lineno}: expected a unique '_id' and a 'text' of one '|user|: ' line")
        out[qid] = turns[0][1]
    return out


def run_rewrite(cfg: RewriteConfig) -> dict:
    import ray

    from .. import tracking
    from ..encode.store import finished_shard, prepare_output
    from ..io import atomic_write_json
    from ..ray_utils import init_ray
    from .rewriters import PROMPT

    turns = load_turns(cfg)
    ident, actor_args = _rewriter(cfg)
    inputs, shards = _plan(cfg, turns)
    out = Path(cfg.output_dir).resolve()
    # What the rewrites depend on: settings, inputs, the prompt and (for a model) its weights' checksum.
    record = {**{k: v for k, v in to_dict(cfg).items() if k not in _RUNTIME}, **inputs, "prompt": PROMPT,
              "model_version": ident.get("model_version")}
    done = prepare_output(out, record, cfg.overwrite, what="rewrites")
    if done is not None:
        print(f"[rewrite] {out} is already complete ({done['count']} rewrites); nothing to do", flush=True)
        return json.loads((out / "result.json").read_text())
    sizes = {s["index"]: len(json.loads(s["items"])) for s in shards}
    pending = [s for s in shards if finished_shard(out, s["index"], sizes[s["index"]]) is None]
    print(f"[rewrite] {len(turns)} turns in {len(shards)} shards; {len(pending)} to rewrite "
          f"({len(shards) - len(pending)} already done)", flush=True)
    started = init_ray()
    try:
        with tracking.job_run("rewrite", to_dict(cfg), dataset=cfg.source, experiment=cfg.experiment,
                              tags={"rayrag.rewriter": cfg.model or cfg.endpoint}) as jr:
            import mlflow

            mlflow.log_param("prompt", PROMPT)
            mlflow.log_text(PROMPT, "prompt.txt")
            t0 = time.perf_counter()
            if pending:
                _rewrite_pending(cfg, out, pending, sizes, actor_args)
            wall = time.perf_counter() - t0
            infos, rows, stats = _collect(out, shards, sizes, turns)
            digest = write_rewrite_file(out / OUTPUT_FILE, rows)
            result = {**stats, "wall_s": wall, "rewritten_now": sum(sizes[s["index"]] for s in pending),
                      "output": str(out / OUTPUT_FILE), "mlflow_run_id": jr.run_id}
            result["rewrites_per_s"] = result["rewritten_now"] / wall if wall > 0 and pending else 0.0
            atomic_write_json(out / "result.json", result)
            manifest = {"count": stats["count"], "file": OUTPUT_FILE, "sha256": digest, "rewriter": ident,
                        "prompt": PROMPT, "fallbacks": stats["fallbacks"], "shards": infos, "plan": record,
                        "config": to_dict(cfg), "mlflow_run_id": jr.run_id}
            atomic_write_json(out / "manifest.json", manifest)  # written last: the folder is complete
            jr.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float))})
            for name in (OUTPUT_FILE, "manifest.json", "result.json"):
                jr.log_artifact(out / name)
            print(f"[rewrite] {stats['count']} rewrites ({stats['fallbacks']} fell back to the last turn) -> "
                  f"{out / OUTPUT_FILE} in {wall:.1f}s", flush=True)
            return result
    finally:
        if started:
            ray.shutdown()


def _rewrite_pending(cfg: RewriteConfig, out: Path, pending: list[dict], sizes: dict, actor_args: dict) -> None:
    import ray
    from tqdm.auto import tqdm

    from ..ray_utils import rows_in_this_thread
    from .rewriters import ShardRewriter

    ray.data.DataContext.get_current().enable_progress_bars = False  # one bar below, in turns
    threads = cfg.threads_per_actor or max(1, int(round(cfg.cpus_per_actor)))
    ds = ray.data.from_items(pending, override_num_blocks=len(pending))
    rows = ds.map_batches(ShardRewriter, batch_size=1, batch_format="numpy",
                          compute=ray.data.ActorPoolStrategy(size=min(cfg.num_actors, len(pending))),
                          num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor or None,
                          fn_constructor_kwargs=dict(out=str(out), rewriter=actor_args, threads=threads))
    with tqdm(total=sum(sizes[s["index"]] for s in pending), desc="rewrite", unit="turn") as bar, \
            closing(rows_in_this_thread(rows)) as finished:
        for row in finished:
            if row["error"]:
                # Shards committed so far stay; a rerun resumes after the endpoint is fixed.
                raise RayragError(f"rewrite stopped: {row['error']}")
            bar.update(int(row["count"]))


def _collect(out: Path, shards: list[dict], sizes: dict, turns: list) -> tuple[list[dict], list, dict]:
    import pyarrow.parquet as pq

    from ..encode.store import finished_shard

    infos, table_rows = [], []
    for s in shards:
        info = finished_shard(out, s["index"], sizes[s["index"]])
        if info is None:
            raise DataError(f"shard {s['index']} did not finish; run the job again to resume")
        infos.append(info)
        table_rows += pq.read_table(out / info["file"]).to_pylist()
    if [r["id"] for r in table_rows] != [t.qid for t in turns]:
        raise DataError(f"{out}/shards do not hold the planned turns in order; rerun with overwrite=true")
    n = len(table_rows)
    stats = {"count": n, "fallbacks": sum(r["fallback"] for r in table_rows),
             "hit_token_limit": sum(r["hit_limit"] for r in table_rows),
             "mean_rewrite_words": sum(len(r["rewrite"].split()) for r in table_rows) / n,
             "mean_rewrite_chars": sum(len(r["rewrite"]) for r in table_rows) / n}
    return infos, [(r["id"], r["rewrite"]) for r in table_rows], stats


def _summary(cfg: RewriteConfig, result: dict) -> str:
    return (f"{result['count']} rewrites ({result['fallbacks']} fallbacks, {result['mean_rewrite_words']:.1f} words "
            f"on average) in {result['output']}")


JOB = Job(
    name="rewrite", config=RewriteConfig, run=run_rewrite,
    help="write standalone rewrites of conversational turns (DiSCo teachers)",
    description="Rewrite each MTRAG turn as a standalone question with a local causal LM in a Ray Data actor pool "
                "(model=<built-in, HF id or folder>, default smollm2-135m) or an OpenAI-compatible endpoint "
                "(model=null endpoint=<http://host:port/v1> endpoint_model=<name>), into <output_dir>/rewrite.jsonl "
                "in the layout of MTRAG's *_rewrite.jsonl. "
                "Resumable shard by shard; the prompt is recorded in MLflow.",
    # The built-in model is the job's default rewriter; an endpoint run says model=null endpoint=...
    flags=("model", "data_dir", "output_dir"), defaults={"model": "smollm2-135m"}, summary=_summary)
