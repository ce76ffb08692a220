"""Human-facing output of evaluations: a text table and plots."""
from __future__ import annotations


def format_table(result: dict) -> str:
    metrics = result["metrics"]
    names = list(next(iter(metrics.values())).keys()) if metrics else []
    width = max([len("retriever")] + [len(r) for r in metrics])
    head = f"{'retriever':<{width}}  " + "  ".join(f"{m:>10}" for m in names)
    lines = [f"{result['dataset']} / {result['split']}  ({result.get('num_queries', '?')} queries, "
             f"{result.get('num_docs', '?')} docs)", head, "-" * len(head)]
    for r, vals in metrics.items():
        lines.append(f"{r:<{width}}  " + "  ".join(f"{vals[m]:>10.4f}" for m in names))
    return "\n".join(lines)


def format_significance(result: dict) -> str:
    """One line per pair and metric: the means, their difference and the paired test's p."""
    lines = []
    for pair, by_metric in (result.get("significance") or {}).items():
        for m, t in by_metric.items():
            lines.append(f"{pair}  {m}: {t['a']:.4f} vs {t['b']:.4f}  diff {t['mean_diff']:+.4f}  p={t['p']:.4f}")
    return "\n".join(["paired randomization tests (by query):"] + lines) if lines else ""


def closing_words(table: str, output_dir: str, result: dict) -> str:
    """An evaluate job's last output: its table, then where result.json and the MLflow run are."""
    return (f"{table}\n\nresult: {output_dir}/result.json  "
            f"MLflow run {result['mlflow_run_id']} ({result['tracking_uri']})")


def plot_recall_curves(curves: dict[str, dict[int, float]], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ks = sorted(curve)
        ax.plot(ks, [curve[k] for k in ks], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    ax.legend()
    return fig
