"""nDCG@k, Recall@k, MRR@k, MAP@k / MAP, with trec_eval's conventions.

Written here rather than calling pytrec_eval at run time because:
  * it needs no C extension on Serve replicas or training workers (per-epoch eval);
  * trec_eval has no MRR@k (``recip_rank`` is uncut), which BEIR/MTEB report;
  * queries judged but absent from the run count as 0 here, where pytrec_eval silently
    drops them and inflates the mean.
tests/test_metrics.py checks every metric against pytrec_eval on a real SciFact run.

Conventions copied from trec_eval: documents are ranked by score descending with ties
broken by docid descending (the run's own order is ignored, as in TREC files); a
judgment > 0 is relevant; nDCG uses linear gain ``rel / log2(rank + 1)``; MAP@k divides
by the number of relevant documents, not by min(k, R).
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Mapping

from ..errors import ConfigError

_METRIC = re.compile(r"^(ndcg|recall|mrr|map|precision)(?:@(\d+))?$")

RunLike = Mapping[str, "Iterable[tuple[str, float]] | Mapping[str, float]"]


def parse_metric(name: str) -> tuple[str, int | None]:
    m = _METRIC.match(name.strip().lower())
    if not m:
        raise ValueError(f"unknown metric {name!r}; use ndcg@k, recall@k, mrr@k, precision@k, map@k or map")
    kind, k = m.group(1), int(m.group(2)) if m.group(2) else None
    if k is None and kind != "map":
        raise ValueError(f"metric {name!r} needs a cutoff, e.g. {kind}@10")
    if k is not None and k < 1:
        raise ValueError(f"metric {name!r}: cutoff must be >= 1")
    return kind, k


def check_metrics(metrics: Iterable[str], depth: int) -> None:
    """A job's ``metrics`` against its retrieval ``depth``: each a known metric whose cutoff the
    run reaches (recall@100 of a top-50 run would silently read as recall@50)."""
    if depth < 1:
        raise ConfigError(f"depth must be >= 1, got {depth}")
    for m in metrics:
        try:
            _, k = parse_metric(m)
        except ValueError as e:
            raise ConfigError(f"metrics: {e}") from None
        if k is not None and k > depth:
            raise ConfigError(f"metrics: {m} needs depth >= {k}, but depth is {depth}")


def trec_order(hits: Iterable[tuple[str, float]] | Mapping[str, float]) -> list[str]:
    items = hits.items() if isinstance(hits, Mapping) else hits
    # (score desc, docid desc): two stable sorts, secondary key first.
    ranked = sorted(items, key=lambda x: x[0], reverse=True)
    ranked.sort(key=lambda x: x[1], reverse=True)
    return [d for d, _ in ranked]


def _query_metric(kind: str, k: int | None, ranked: list[str], judged: Mapping[str, int]) -> float:
    relevant = {d for d, r in judged.items() if r > 0}
    if not relevant:
        return 0.0
    top = ranked if k is None else ranked[:k]
    if kind == "ndcg":
        dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(top) if judged.get(d, 0) > 0)
        ideal = sorted((r for r in judged.values() if r > 0), reverse=True)[:k]
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
        return dcg / idcg
    if kind == "recall":
        return sum(d in relevant for d in top) / len(relevant)
    if kind == "precision":
        return sum(d in relevant for d in top) / k
    if kind == "mrr":
        return next((1.0 / (i + 1) for i, d in enumerate(top) if d in relevant), 0.0)
    if kind == "map":
        hits, total = 0, 0.0
        for i, d in enumerate(top):
            if d in relevant:
                hits += 1
                total += hits / (i + 1)
        return total / len(relevant)
    raise ValueError(kind)


def evaluate_per_query(qrels: Mapping[str, Mapping[str, int]], run: RunLike,
                       metrics: Iterable[str]) -> dict[str, dict[str, float]]:
    """qid -> metric -> value, for every judged query (queries missing from the run score 0)."""
    parsed = {m: parse_metric(m) for m in metrics}
    out: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        ranked = trec_order(run.get(qid, ()))
        out[qid] = {m: _query_metric(kind, k, ranked, judged) for m, (kind, k) in parsed.items()}
    return out


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: RunLike, metrics: Iterable[str]) -> dict[str, float]:
    """Mean of each metric over the judged queries that have at least one relevant document."""
    return evaluate_scored(qrels, run, metrics)[0]


def evaluate_scored(qrels: Mapping[str, Mapping[str, int]], run: RunLike,
                    metrics: Iterable[str]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """``evaluate``'s means and the per-query values they average (qid -> metric -> value, over
    the queries with at least one relevant document): what paired tests need, computed once."""
    metrics = list(metrics)
    judged = {q: j for q, j in qrels.items() if any(r > 0 for r in j.values())}
    if not judged:
        raise ValueError("qrels contain no relevant judgments")
    per_query = evaluate_per_query(judged, run, metrics)
    return {m: sum(v[m] for v in per_query.values()) / len(per_query) for m in metrics}, per_query
