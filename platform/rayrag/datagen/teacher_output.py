"""The teacher-scoring job's output folder: examples per split and a manifest, published at once."""
from __future__ import annotations

import json
from pathlib import Path

from ..io import atomic_dir, atomic_write_json, sha256_file


def example(turn, scored: dict, pool: dict) -> dict:
    """One line of the agreed DiSCo examples format (see ``teacher_scores.py``)."""
    docs = scored["docs"]
    present = set(docs)
    return {"query_id": turn.qid, "conversation_id": turn.conversation_id, "domain": turn.domain,
            "query": turn.query, "docs": [{"id": d, "text": pool[d].text} for d in docs],
            "positives": [p for p in turn.positives if p in present],
            "teacher_scores": scored["teacher_scores"], "teacher_queries": turn.teacher_queries}


def _counts(lines: list[dict]) -> dict:
    def one(rows):
        n = [len(r["docs"]) for r in rows]
        return {"turns": len(rows), "conversations": len({r["conversation_id"] for r in rows}),
                "candidates_mean": sum(n) / max(1, len(n)), "candidates_min": min(n, default=0),
                "candidates_max": max(n, default=0), "positives": sum(len(r["positives"]) for r in rows),
                "turns_without_positives": sum(not r["positives"] for r in rows)}

    by_domain = {d: one([r for r in lines if r["domain"] == d]) for d in sorted({r["domain"] for r in lines})}
    return {"all": one(lines), **by_domain}


def write_output(out: Path, cfg, texts: list, scored: dict, pools: dict, model: str, spec: dict,
                 missing: dict, inputs: list[Path], extra: dict) -> dict:
    from .teacher_inputs import parse_teacher

    held = [] if cfg.fold == "all" else ["recipe" if cfg.holdout == "recipe" else "eval"]
    splits: dict[str, list[dict]] = {s: [] for s in ["train", *held]}
    for t in texts:  # the driver's turn order (domain, then file order): the same file every run
        splits[t.split].append(example(t, scored[t.qid], pools[t.domain]))
    counts = {s: _counts(rows) for s, rows in splits.items()}
    metrics = {f"{s}_{k}": v for s, c in counts.items() for k, v in c["all"].items()}
    metrics.update(positives_missing_from_pool=sum(missing.values()), wall_s=extra["wall_s"])
    teachers = dict(map(parse_teacher, cfg.teachers))
    with atomic_dir(out, replace=True) as tmp:
        for s, rows in splits.items():
            with open(tmp / f"{s}.jsonl", "w") as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
        manifest = {"format": "disco-teacher-scores/1", "teachers": list(teachers),
                    "teacher_files": {n: p for n, p in teachers.items() if p}, "fold": spec, "k": cfg.k,
                    "model": model, "max_length": cfg.max_length, "history_max_tokens": cfg.history_max_tokens,
                    "domains": list(cfg.domains), "counts": counts, "positives_missing_from_pool": missing,
                    "inputs_sha256": {str(p): sha256_file(p) for p in inputs},
                    "files": {f"{s}.jsonl": sha256_file(tmp / f"{s}.jsonl") for s in splits},
                    "metrics": metrics, **extra}
        atomic_write_json(tmp / "manifest.json", manifest)
    return manifest
