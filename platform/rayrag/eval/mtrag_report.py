"""Scoring, aggregation and outputs of the MTRAG evaluation (``eval/mtrag.py``).

Figures are means over turns (micro averages): per domain, over all domains, and over all
but govt, whose pool is small (1,760 passages) and therefore flatters every retriever.
"""
from __future__ import annotations

import json
from pathlib import Path

from .metrics import evaluate_per_query
from .significance import paired_test_by_conversation
from .trec import write_run

NO_GOVT = "all_but_govt"


def scopes(turns) -> dict[str, set[str]]:
    """scope name -> qids: each domain, "all", and "all_but_govt" when govt is among others."""
    domains = sorted({t.domain for t in turns})
    out = {d: {t.qid for t in turns if t.domain == d} for d in domains}
    out["all"] = {t.qid for t in turns}
    if "govt" in domains and len(domains) > 1:
        out[NO_GOVT] = {t.qid for t in turns if t.domain != "govt"}
    return out


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def collect(parts: list[dict]) -> tuple[dict, dict, dict]:
    """Task results -> runs[label][form], terms[label][form][qid], timings[label][domain]."""
    runs, terms, timings = {}, {}, {}
    for p in parts:
        for form, run in p["runs"].items():
            runs.setdefault(p["label"], {}).setdefault(form, {}).update(run)
        for form, t in p["terms"].items():
            terms.setdefault(p["label"], {}).setdefault(form, {}).update(t)
        timings.setdefault(p["label"], {})[p["domain"]] = p["timings"]
    return runs, terms, timings


def _tests(cfg, pairs, per_turn_label: dict, scope_ids: dict, conv: dict) -> dict:
    """"a vs b" -> metric -> scope -> {mean_diff, p}: paired randomization by conversation."""
    out = {}
    for better, base in pairs:
        if better not in per_turn_label or base not in per_turn_label:
            continue  # e.g. a student pair on BM25, which has no student form
        by_metric = {}
        for m in cfg.significance_metrics:
            tests = {}
            for s in ("all", NO_GOVT):
                if s not in scope_ids:
                    continue
                a = {q: per_turn_label[better][q][m] for q in scope_ids[s]}
                b = {q: per_turn_label[base][q][m] for q in scope_ids[s]}
                tests[s] = {"mean_diff": _mean(a[q] - b[q] for q in a),
                            "p": paired_test_by_conversation(a, b, conv, cfg.permutations, cfg.seed)}
            by_metric[m] = tests
        out[f"{better} vs {base}"] = by_metric
    return out


def summarize(cfg, entries: list[tuple[str, str]], inputs, parts: list[dict]) -> dict:
    from .mtrag_arms import parse_forms, parse_pairs

    runs, terms, timings = collect(parts)
    qrels, conv = inputs.qrels, inputs.conversation_of
    scope_ids = scopes(inputs.turns)
    forms = parse_forms(cfg.query_forms, cfg.turns)
    pairs = parse_pairs(cfg.pairs, forms)
    per_turn = {label: {f.name: evaluate_per_query(qrels, runs[label][f.name], cfg.metrics)
                        for f in forms if f.name in runs[label]} for label, _ in entries}
    metrics, query_terms, significance = {}, {}, {}
    for label, _ in entries:
        metrics[label] = {form: {s: {m: _mean(scores[q][m] for q in ids) for m in cfg.metrics}
                                 for s, ids in scope_ids.items()} for form, scores in per_turn[label].items()}
        if label in terms:
            query_terms[label] = {form: {s: _mean(t[q] for q in ids) for s, ids in scope_ids.items()}
                                  for form, t in terms[label].items()}
        significance[label] = _tests(cfg, pairs, per_turn[label], scope_ids, conv)
    return {
        "dataset": inputs.dataset,
        "split": "dev",
        "retrievers": dict(entries),
        "query_forms": [f.name for f in forms],
        "metrics": metrics,
        "query_terms": query_terms,
        "significance": significance,
        "num_turns": {s: len(ids) for s, ids in scope_ids.items()},
        "num_conversations": len(set(conv.values())),
        "pool_size": {d: len(p) for d, p in inputs.pools.items()},
        "judged_missing_from_pool": inputs.missing_from_pool,
        "history": {"tokenizer": cfg.history_tokenizer, "max_tokens": cfg.history_max_tokens,
                    "with_agent": cfg.with_agent, "truncated_turns": inputs.truncated},
        "students": inputs.student_folds,  # form -> fold -> {folder, turns it encoded}
        "timings_s": timings,
        "_per_turn": per_turn,  # written to per_turn.jsonl, removed from result.json
        "_runs": runs,
        "_terms": terms,
    }


def flat_metrics(result: dict) -> dict[str, float]:
    """MLflow keys ``<label>/<form>/<scope>/<metric>`` and ``<label>/<form>/<scope>/query_terms``."""
    out = {f"{label}/{form}/{s}/{m}": v for label, forms in result["metrics"].items()
           for form, by_scope in forms.items() for s, vals in by_scope.items() for m, v in vals.items()}
    out.update({f"{label}/{form}/{s}/query_terms": v for label, forms in result["query_terms"].items()
                for form, by_scope in forms.items() for s, v in by_scope.items()})
    return out


def write_outputs(out: Path, result: dict, inputs) -> None:
    """TREC runs (``runs/<label>.<form>.trec``) and ``per_turn.jsonl``; strips the private keys."""
    from ..io import atomic_write_bytes

    runs, per_turn, terms = result.pop("_runs"), result.pop("_per_turn"), result.pop("_terms")
    for label, forms in runs.items():
        for form, run in forms.items():
            name = f"{_file_safe(label)}.{_file_safe(form)}"
            write_run(out / "runs" / f"{name}.trec", run, tag=name)
    rows = []
    for t in inputs.turns:
        for label, forms in per_turn.items():
            for form, scores in forms.items():
                row = {"qid": t.qid, "conversation_id": t.conversation_id, "domain": t.domain,
                       "retriever": label, "form": form, **scores[t.qid]}
                if form in terms.get(label, {}):
                    row["query_terms"] = terms[label][form][t.qid]
                rows.append(json.dumps(row))
    atomic_write_bytes(out / "per_turn.jsonl", ("\n".join(rows) + "\n").encode())


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def format_table(result: dict) -> str:
    """One line per (retriever, form, scope), metrics as columns, SPLADE query terms last."""
    names = list(next(iter(next(iter(result["metrics"].values())).values()))["all"])
    w = max(11, 2 + max(len(f) for forms in result["metrics"].values() for f in forms))
    lines = [f"MTRAG {result['dataset']}: {result['num_turns']['all']} turns, {result['num_conversations']} "
             f"conversations",
             f"{'retriever':<14}{'form':<{w}}{'scope':<14}" + "".join(f"{m:>11}" for m in names) + f"{'q-terms':>9}"]
    for label, forms in result["metrics"].items():
        for form, by_scope in forms.items():
            for s, vals in by_scope.items():
                qt = result["query_terms"].get(label, {}).get(form, {}).get(s)
                lines.append(f"{label:<14}{form:<{w}}{s:<14}" + "".join(f"{vals[m]:>11.4f}" for m in names)
                             + (f"{qt:>9.1f}" if qt is not None else f"{'-':>9}"))
    for label, tests in result["significance"].items():
        for pair, by_metric in tests.items():
            for m, t in by_metric.items():
                lines.append(f"{label}: {pair} {m} " + "  ".join(
                    f"{s}: {v['mean_diff']:+.4f} (p={v['p']:.4f})" for s, v in t.items()))
    return "\n".join(lines)
