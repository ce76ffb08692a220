"""Teacher scores for DiSCo (Lupart, Aliannejadi & Kanoulas, "DiSCo Meets LLMs", arXiv 2410.14609):
per training turn, a candidate set and every teacher's SPLADE scores on it.

The student (a SPLADE query encoder reading the conversation) learns to give the candidates
the score distribution a teacher gives them from a standalone rewrite of the turn, with the
same frozen document encoder, so the pool index of each domain stays valid. Candidates are
each teacher's top-k on its rewrite, then the last turn's top-k, then the full history's top-k
(``candidates`` picks the sources), then the judged positives, deduplicated in that order.

Why the history's top-k: it is what the untrained student retrieves, so it holds the student's
own mistakes (passages matching an earlier turn's terms). Without them the student never sees
the passages it must learn to push down, and ranking among the candidates flatters the history:
on fold 0's recipe holdout the history ranked the teacher-and-last-turn candidates almost as well
as the teacher did (nDCG@10 0.253 against 0.284), while over the whole pool the rewrite is far
ahead. With them the untrained history falls to 0.161 there, and the student has something to learn.

A teacher's score of a candidate is the dot product of sparse representations computed exactly
as the inverted index computes it (``q @ postings``), for every candidate, also those outside its
own top-k.

Output folder: ``train.jsonl`` and, unless ``fold=all``, ``eval.jsonl`` (the fold's test part) or,
with ``holdout=recipe``, ``recipe.jsonl`` (the recipe holdout), one line per turn::

    {"query_id", "conversation_id", "domain", "query", "docs": [{"id", "text"}], "positives": [id],
     "teacher_scores": {teacher: [score per doc]}, "teacher_queries": {teacher: text}}

and ``manifest.json`` (fold spec, teachers, counts, sha256 of every input and output).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import to_dict
from ..errors import ConfigError
from ..job import Job


CANDIDATE_SOURCES = ("teachers", "last_turn", "history")


@dataclass
class TeacherScoresConfig:
    dataset: str = "mtrag"  # folder under the data dir (or a path) holding mtrag-human/ and pool/
    data_dir: str | None = None  # default: $RAYRAG_DATA_DIR
    index: str = "out/mtrag/index-splade-{domain}"  # one SPLADE pool index per domain
    model: str | None = None  # None: the indexes' own model; if given it must be that model
    teachers: list[str] = field(default_factory=lambda: ["human"])  # "human" | "<name>=<rewrite folder or file>"
    domains: list[str] = field(default_factory=lambda: ["clapnq", "cloud", "fiqa", "govt"])
    fold: str = "0"  # 0-based fold index, or "all" (every conversation trains; no eval.jsonl)
    folds: int = 5
    seed: int = 0
    holdout: str = "none"  # "recipe": recipe.jsonl = fold k's recipe holdout (out of train); test part left out
    holdout_size: int = 15
    k: int = 50  # top-k per candidate source
    # where candidates come from: "teachers" (each rewrite's top-k), "last_turn", "history" (the
    # student's own input, untrained); the judged positives are always added
    candidates: list[str] = field(default_factory=lambda: ["teachers", "last_turn", "history"])
    max_length: int = 256  # SPLADE query length
    history_max_tokens: int = 256  # the formatter's budget for every query text (<= max_length)
    batch_size: int = 32
    output_dir: str = "out/disco/fold0"
    cpus_per_task: float = 1.0
    num_cpus: int | None = None  # local Ray only
    experiment: str = "rayrag"

    def validate(self) -> None:
        from ..data.mtrag import DOMAINS
        from .teacher_inputs import parse_teacher

        if "{domain}" not in self.index:
            raise ConfigError(f"index must contain {{domain}} (one index per domain), got {self.index!r}")
        names = [parse_teacher(t)[0] for t in self.teachers]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"teachers: give at least one, with distinct names; got {names}")
        bad = [d for d in self.domains if d not in DOMAINS]
        if bad or not self.domains or len(set(self.domains)) != len(self.domains):
            raise ConfigError(f"domains: give distinct values from {list(DOMAINS)}, got {self.domains}")
        if self.folds < 2:
            raise ConfigError(f"folds must be >= 2, got {self.folds}")
        if self.fold != "all" and not (self.fold.isdigit() and int(self.fold) < self.folds):
            raise ConfigError(f"fold must be 'all' or a fold index 0..{self.folds - 1}, got {self.fold!r}")
        if self.holdout not in ("none", "recipe"):
            raise ConfigError(f"holdout must be 'none' or 'recipe', got {self.holdout!r}")
        if self.holdout == "recipe" and self.fold == "all":
            raise ConfigError("holdout=recipe needs a fold index: the recipe holdout comes out of a fold's "
                              "training part")
        bad = [c for c in self.candidates if c not in CANDIDATE_SOURCES]
        if bad or not self.candidates or len(set(self.candidates)) != len(self.candidates):
            raise ConfigError(f"candidates: give distinct values from {list(CANDIDATE_SOURCES)}, got {self.candidates}")
        if self.k < 1 or self.batch_size < 1 or self.cpus_per_task <= 0:
            raise ConfigError("k and batch_size must be >= 1 and cpus_per_task > 0")
        if not 8 <= self.history_max_tokens <= self.max_length:
            raise ConfigError(f"history_max_tokens ({self.history_max_tokens}) must be in 8..max_length "
                              f"({self.max_length}): SPLADE would cut the current turn off the end")


def _score_domain(folder: str, model: str, max_length: int, batch_size: int, k: int, sources: list[str],
                  turns: list[dict], threads: int) -> list[dict]:
    """Inside a Ray task: one domain's candidates and every teacher's scores on them."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from ..index.store import load_index, single_index
    from ..index.topk import top_k_rows
    from ..models.sparse import SpladeEncoder

    torch.set_num_threads(threads)
    encoder = SpladeEncoder(model, max_length=max_length)
    loaded = load_index(folder, expected_dim=encoder.vocab_size)
    postings, ids = single_index(loaded, "teacher-scores").postings, loaded.ids  # [V, N]
    row_of = {d: i for i, d in enumerate(ids)}
    teachers = list(turns[0]["teacher_queries"]) if turns else []
    enc = {t: encoder.encode([x["teacher_queries"][t] for x in turns], batch_size, progress=False) for t in teachers}
    # candidate-only queries (the teachers' are encoded above, since they score every candidate)
    field_of = {"last_turn": "last_turn", "history": "query"}  # TurnTexts fields
    own = {s: encoder.encode([x[field_of[s]] for x in turns], batch_size, progress=False)
           for s in field_of if s in sources}
    out = []
    for i, turn in enumerate(tqdm(turns, desc=f"teacher-scores {Path(folder).name}", unit="turn", mininterval=5)):
        # The same product the index searches with, so scores are the index's own, top-k or not.
        full = {t: (enc[t][i] @ postings).toarray()[0] for t in teachers}  # [N] each
        order: dict[int, None] = {}
        runs = [full[t] for t in teachers] if "teachers" in sources else []
        runs += [(own[s][i] @ postings).toarray()[0] for s in field_of if s in own]
        for scores in runs:
            idx, val = top_k_rows(scores[None, :], k)
            order.update((int(j), None) for j, s in zip(idx[0], val[0]) if s > 0)  # 0: no shared term
        order.update((row_of[d], None) for d in turn["positives"])
        rows = np.fromiter(order, dtype=np.int64)
        out.append({"query_id": turn["qid"], "docs": [ids[j] for j in rows],
                    "teacher_scores": {t: full[t][rows].astype(float).tolist() for t in teachers}})
    return out


def _inputs(cfg: TeacherScoresConfig):
    from ..assets import load_tokenizer
    from ..data.locate import dataset_dir
    from ..data.mtrag import load_human_tasks, load_pool
    from .teacher_inputs import check_index, index_model, parse_teacher, read_rewrites, split_conversations, turn_texts

    root = dataset_dir(cfg.dataset, cfg.data_dir)
    # Folds are dealt over every domain's conversations, so a run over some domains writes the
    # same split of them as a run over all four (and as the evaluation's folds).
    turns = load_human_tasks(root)
    split_of, spec = split_conversations(turns, cfg.fold, cfg.folds, cfg.seed, cfg.holdout, cfg.holdout_size)
    turns = [t for t in turns if t.domain in cfg.domains and t.conversation_id in split_of]
    pools = {d: load_pool(root, d) for d in cfg.domains}
    folders = {d: Path(cfg.index.format(domain=d)).resolve() for d in cfg.domains}
    manifests = {d: check_index(folders[d], d, set(pools[d])) for d in cfg.domains}
    model = index_model(manifests, cfg.model)
    rewrites = {name: (None if path is None else read_rewrites(path, [t.qid for t in turns]))
                for name, path in map(parse_teacher, cfg.teachers)}
    tokenizer = load_tokenizer(model)
    texts, missing = [], {d: 0 for d in cfg.domains}
    for t in turns:
        tt, miss = turn_texts(t, split_of[t.conversation_id], rewrites, set(pools[t.domain]), tokenizer,
                              cfg.history_max_tokens)
        texts.append(tt)
        missing[t.domain] += miss
    files = [root / "mtrag-human" / "retrieval_tasks" / d / n for d in cfg.domains
             for n in (f"{d}_questions.jsonl", f"{d}_lastturn.jsonl", f"{d}_rewrite.jsonl", "qrels/dev.tsv")]
    files += [root / "pool" / "corpus" / f"{d}.jsonl" for d in cfg.domains]
    files += [folders[d] / "manifest.json" for d in cfg.domains]
    # A rewrite job's folder: its manifest holds the file's sha256 (load_rewrites checked it).
    paths = [Path(p) for _, p in map(parse_teacher, cfg.teachers) if p]
    files += [p / "manifest.json" if p.is_dir() else p for p in paths]
    return texts, pools, folders, model, spec, missing, files


def run_teacher_scores(cfg: TeacherScoresConfig) -> dict:
    import ray

    from .. import tracking
    from ..ray_utils import init_ray
    from .teacher_output import write_output

    cfg.validate()
    texts, pools, folders, model, spec, missing, files = _inputs(cfg)  # all checked: Ray not started yet
    started = init_ray(cfg.num_cpus)
    try:
        with tracking.job_run("teacher-scores", to_dict(cfg), dataset="mtrag-human", experiment=cfg.experiment,
                              tags={"rayrag.fold": cfg.fold}) as jr:
            t0 = time.perf_counter()
            remote = ray.remote(_score_domain)
            threads = max(1, int(round(cfg.cpus_per_task)))
            pending = {remote.options(num_cpus=cfg.cpus_per_task, name=f"teacher-scores:{d}").remote(
                str(folders[d]), model, cfg.max_length, cfg.batch_size, cfg.k, cfg.candidates,
                [asdict(t) for t in texts if t.domain == d], threads): d for d in cfg.domains}
            scored = {}
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                domain = pending.pop(done)
                scored.update((r["query_id"], r) for r in ray.get(done))
                print(f"[teacher-scores] {domain}: done ({len(pending)} left)", flush=True)
            out = Path(cfg.output_dir).resolve()
            manifest = write_output(out, cfg, texts, scored, pools, model, spec, missing, files,
                                    {"mlflow_run_id": jr.run_id, "wall_s": time.perf_counter() - t0})
            jr.log_metrics(manifest["metrics"])
            jr.log_artifact(out, "teacher-scores")
            return manifest
    finally:
        if started:
            ray.shutdown()


def _summary(cfg: TeacherScoresConfig, m: dict) -> str:
    parts = [f"{s}: {c['all']['turns']} turns, {c['all']['candidates_mean']:.1f} candidates each"
             for s, c in m["counts"].items()]
    return f"teacher scores ({', '.join(m['teachers'])}) in {cfg.output_dir}: " + "; ".join(parts)


JOB = Job(
    name="teacher-scores", config=TeacherScoresConfig, run=run_teacher_scores,
    help="write DiSCo training examples: candidates and every teacher's SPLADE scores per turn",
    description="For each MTRAG turn of a fold (fold=<k>|all), take each teacher's top-k on its rewrite "
                "(teachers=[human,<name>=<rewrite job folder or *_rewrite.jsonl file>]), the last turn's and the "
                "full history's top-k (candidates=[...]) and the judged positives from the domain's SPLADE pool "
                "index (index=<folder with {domain}>), "
                "score every candidate with every teacher, and write train.jsonl and eval.jsonl (recipe.jsonl "
                "with holdout=recipe) with a manifest.",
    flags=("output_dir",), summary=_summary)
