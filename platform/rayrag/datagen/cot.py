"""The cot job: a keyword chain of thought per training query, for LREM's stage 1.

Liu et al., "Large Reasoning Embedding Models" (arXiv 2510.14321) build query-CoT-item triplets:
a teacher reasons, keywords are extracted, words already in the query are removed, and a
triplet is kept only if the keywords help retrieval. Teachers here (``teacher=``):
- ``oracle``: words of the gold passage absent from the query, ranked by their contribution to
  the passage's BM25 score (the single-word BM25 score), as many as fit the token limit;
- ``llm``: a causal LM (``model=``: built-in name, folder or HF id) or an OpenAI-compatible chat
  endpoint (``endpoint=``) lists keywords (``cot_llm.py``); the same clean-up follows.
Both go through the same filter (``filter: rank``): the keywords must raise the gold passage's
BM25 rank over the corpus (query + keywords against query alone); ``filter: none`` keeps all.

Input: the mine job's examples (query, positives, negatives); output: the same lines with
``cot`` (comma-separated keywords), for the queries that keep one, written atomically, plus
``<output>.stats.json``. Ray Data actors each hold one BM25 index over the corpus.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import to_dict
from ..errors import ConfigError, DataError
from ..job import Job

TEACHERS = ("oracle", "llm")
FILTERS = ("rank", "none")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9\-]*[A-Za-z0-9]")


@dataclass
class CotConfig:
    examples: str = "out/mine/scifact-train-bm25.jsonl"  # the mine job's output
    dataset: str = "scifact"
    data_dir: str | None = None
    output: str = "out/cot/scifact-train-oracle.jsonl"
    teacher: str = "oracle"  # oracle | llm
    model: str | None = None  # llm: built-in name, folder or HF id (or endpoint=)
    endpoint: str | None = None  # llm: an OpenAI-compatible .../v1 URL
    endpoint_model: str | None = None
    limit: int | None = None  # the first N examples only (the llm teacher on a CPU: keep it small)
    tokenizer: str = "smollm2-135m"  # the embedder to be trained: CoT lengths are its tokens
    max_cot_tokens: int = 16  # the paper's limit
    max_keywords: int = 8
    filter: str = "rank"  # rank: keep only keywords that raise the gold passage's BM25 rank; none
    num_actors: int = 1
    batch_size: int = 32
    experiment: str = "rayrag"

    def validate(self) -> None:
        if self.teacher not in TEACHERS:
            raise ConfigError(f"teacher must be one of {TEACHERS}, got {self.teacher!r}")
        if self.filter not in FILTERS:
            raise ConfigError(f"filter must be one of {FILTERS}, got {self.filter!r}")
        if self.teacher == "llm" and bool(self.model) == bool(self.endpoint):
            raise ConfigError("teacher=llm needs exactly one of model=<name, folder or HF id> and "
                              "endpoint=<http://host:port/v1>")
        if self.teacher == "llm" and self.endpoint and not self.endpoint_model:
            raise ConfigError("endpoint needs endpoint_model=<the model name the server serves>")
        if self.teacher == "oracle" and (self.model or self.endpoint):
            raise ConfigError("model= and endpoint= are for teacher=llm; the oracle reads the gold passage")
        for key in ("max_cot_tokens", "max_keywords", "num_actors", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1 or null, got {self.limit}")


def fit_keywords(words: list[str], n_tokens, max_tokens: int, max_keywords: int) -> str:
    """The longest prefix of ``words`` whose ``", "``-joined text has at most ``max_tokens``
    tokens (``n_tokens(text)``), capped at ``max_keywords`` words; "" when none fits."""
    kept: list[str] = []
    for w in words[:max_keywords]:
        if n_tokens(", ".join(kept + [w])) > max_tokens:
            break
        kept.append(w)
    return ", ".join(kept)


def stems(text: str, stem) -> set[str]:
    return {stem(w.lower()) for w in _WORD.findall(text)}


def oracle_words(bm25, q_stems: set[str], doc_id: str, text: str, stem) -> list[str]:
    """Words of the gold passage whose stems are not the query's, by their BM25 contribution."""
    first: dict[str, str] = {}
    for w in _WORD.findall(text):
        s = stem(w.lower())
        if s not in q_stems and s not in first:
            first[s] = w.lower()
    scored = [(bm25.score(w, [doc_id])[0], w) for w in first.values()]
    return [w for s, w in sorted(scored, key=lambda x: (-x[0], x[1])) if s > 0]


def clean_keywords(raw: str) -> list[str]:
    """A teacher's free text -> keywords: split on commas/newlines, strip list marks and quotes."""
    out = []
    for part in re.split(r"[,\n;]", raw):
        w = re.sub(r"^[\s\-\*\d\.\)]+", "", part).strip(" \"'`*.:")
        if w and len(w) <= 40 and w.lower() not in {o.lower() for o in out}:
            out.append(w)
    return out


class CotWorker:
    """Ray Data actor: one BM25 index over the corpus and the embedder's tokenizer."""

    def __init__(self, cfg: dict, corpus_ref: list):
        import ray
        import Stemmer
        from ..assets import load_tokenizer
        from ..config import from_dict
        from ..search.bm25 import BM25Retriever

        self.cfg = from_dict(CotConfig, cfg)
        self.corpus = ray.get(corpus_ref[0])
        self.bm25 = BM25Retriever()
        self.bm25.index(self.corpus)
        self.stem = Stemmer.Stemmer("english").stemWord
        self.tok = load_tokenizer(self.cfg.tokenizer)
        self.llm = None
        if self.cfg.teacher == "llm":
            from .cot_llm import KeywordLLM

            self.llm = KeywordLLM(self.cfg.model, self.cfg.endpoint, self.cfg.endpoint_model)

    def _n_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def __call__(self, batch: dict) -> dict:
        lines = [json.loads(x) for x in batch["line"]]
        q_stems = [stems(ex["query"], self.stem) for ex in lines]
        if self.llm is not None:
            words = [clean_keywords(raw) for raw in self.llm.keywords([ex["query"] for ex in lines])]
        else:
            words = [oracle_words(self.bm25, q, ex["positives"][0]["id"],
                                  self.corpus[ex["positives"][0]["id"]].full_text, self.stem)
                     for ex, q in zip(lines, q_stems)]
        out, before, after, n_tok = [], [], [], []
        for ex, ws, qs in zip(lines, words, q_stems):
            ws = [w for w in ws if not stems(w, self.stem) <= qs]  # an LLM's keyword may repeat the query
            cot = fit_keywords(ws, self._n_tokens, self.cfg.max_cot_tokens, self.cfg.max_keywords)
            gold = ex["positives"][0]["id"]
            r0 = self.bm25.rank(ex["query"], gold)
            r1 = self.bm25.rank(ex["query"] + " " + cot.replace(",", " "), gold) if cot else r0
            keep = bool(cot) and (self.cfg.filter == "none" or r1 < r0)
            out.append(json.dumps({**ex, "cot": cot}) if keep else "")
            before.append(r0)
            after.append(r1)
            n_tok.append(self._n_tokens(cot) if keep else 0)
        return {"i": batch["i"], "line": out, "rank_before": before, "rank_after": after, "cot_tokens": n_tok}


def run_cot(cfg: CotConfig) -> dict:
    import numpy as np
    import ray

    from .. import tracking
    from ..data import dataset_dir
    from ..data.beir import load_corpus
    from ..data.jsonl import read_jsonl, require_file
    from ..io import atomic_open, atomic_write_json
    from ..ray_utils import init_ray

    corpus = load_corpus(dataset_dir(cfg.dataset, cfg.data_dir) / "corpus.jsonl")
    lines = []
    for lineno, obj in read_jsonl(require_file(Path(cfg.examples), "training examples (run `rayrag mine` first)")):
        pos = obj.get("positives")
        if not isinstance(obj.get("query"), str) or not obj["query"].strip() or not isinstance(pos, list) or not pos \
                or not all(isinstance(p, dict) and p.get("id") in corpus for p in pos):
            raise DataError(f"{cfg.examples}:{lineno}: needs a non-empty 'query' and 'positives' whose ids are "
                            f"in the {cfg.dataset} corpus")
        lines.append(json.dumps(obj))
    lines = lines[:cfg.limit] if cfg.limit else lines
    out = Path(cfg.output).resolve()
    started = init_ray()
    try:
        with tracking.job_run("cot", to_dict(cfg), dataset=cfg.dataset, experiment=cfg.experiment,
                              tags={"rayrag.teacher": cfg.teacher}) as jr:
            t0 = time.perf_counter()
            ref = [ray.put(corpus)]
            ds = ray.data.from_items([{"i": i, "line": x} for i, x in enumerate(lines)]).map_batches(
                CotWorker, fn_constructor_kwargs={"cfg": to_dict(cfg), "corpus_ref": ref},
                batch_size=cfg.batch_size, compute=ray.data.ActorPoolStrategy(size=cfg.num_actors), num_cpus=1)
            rows = sorted(ds.take_all(), key=lambda r: r["i"])  # input order, whatever the actors' order
            kept_rows = [r for r in rows if r["line"]]
            kept = [json.loads(r["line"]) for r in kept_rows]
            out.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(out) as f:
                for ex in kept:
                    f.write(json.dumps(ex) + "\n")
            before = np.array([r["rank_before"] for r in rows])
            after = np.array([r["rank_after"] for r in rows])
            stats = {"queries": len(lines), "kept": len(kept), "kept_share": len(kept) / len(lines),
                     "cot_words_mean": float(np.mean([len(e["cot"].split(", ")) for e in kept])) if kept else 0.0,
                     "cot_tokens_mean": float(np.mean([r["cot_tokens"] for r in kept_rows])) if kept else 0.0,
                     "gold_rank_before_median": float(np.median(before)),
                     "gold_rank_after_median": float(np.median(after)),
                     "gold_rank_raised": int((after < before).sum()), "wall_s": time.perf_counter() - t0}
            atomic_write_json(Path(str(out) + ".stats.json"), stats)
            jr.log_metrics(stats)
            jr.log_artifact(out)
            print(f"[cot] {cfg.teacher}: {len(kept)} of {len(lines)} queries keep a CoT ({stats['cot_words_mean']:.1f} "
                  f"keywords, {stats['cot_tokens_mean']:.1f} tokens on average) -> {out}", flush=True)
            return {**stats, "output": str(out), "mlflow_run_id": jr.run_id}
    finally:
        if started:
            ray.shutdown()


JOB = Job(
    name="cot", config=CotConfig, run=run_cot,
    help="write a keyword chain of thought per training query (LREM stage-1 data)",
    description="Add a 'cot' (comma-separated keywords, at most max_cot_tokens tokens) to the mine job's examples "
                "(examples=<file>), from the gold passage (teacher=oracle) or a language model (teacher=llm), "
                "keeping only those that raise the gold passage's BM25 rank.",
    flags=("dataset", "data_dir"))
