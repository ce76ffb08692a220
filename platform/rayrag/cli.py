"""The ``rayrag`` command. Jobs in ``jobs/`` call into the same parsers, so flags match."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from .errors import RayragError
from .encode.config import EncodeConfig
from .eval.config import EvaluateConfig
from .datagen.mine import MineConfig
from .index.build import IndexConfig
from .quickstart import QuickstartConfig
from .train.config import TrainConfig
from .train.objectives.registry import TRAIN_COMMANDS, command_for, command_objectives

# Job name (module in jobs/) -> its config class; tests load every YAML through this.
JOB_CONFIGS = {"evaluate": EvaluateConfig, "quickstart": QuickstartConfig, "encode": EncodeConfig,
               "index": IndexConfig, "mine": MineConfig, "train_dense": TrainConfig, "train_reranker": TrainConfig}


def _add_job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (see jobs/configs/)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. depth=1000 options.batch_size=32")


def _job_config(cls, args: argparse.Namespace, extra: Sequence[str] = ()):
    """defaults <- --config YAML <- key=value overrides <- flags named like config fields."""
    from dataclasses import fields

    from .config import load_config

    flags = {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}
    return load_config(cls, args.config, [*extra, *args.overrides], **flags)


def _evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate retrievers on a BEIR dataset inside Ray",
                       description="Run retrievers on a BEIR split in Ray tasks; write result.json, "
                                   "TREC run files and an MLflow run.")
    _add_job_args(p)
    p.add_argument("--dataset", help="dataset folder name under the data dir (default scifact)")
    p.add_argument("--split", help="qrels split (default test)")
    p.add_argument("--data-dir", help="folder holding datasets (default $RAYRAG_DATA_DIR)")
    p.add_argument("--output-dir", help="where result.json and runs/ go")
    p.add_argument("--retrievers", help="comma-separated, e.g. bm25,minilm,splade-tiny,dense:/path/model")
    p.add_argument("--rerank", help="reranker model folder (from train-reranker) re-scoring each retriever's top "
                                    "rerank_depth (default 100); adds '<retriever>>>rerank' rows")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args) -> int:
    from .eval.job import run_evaluate
    from .eval.report import format_table

    cfg = _job_config(EvaluateConfig, args)
    result = run_evaluate(cfg)
    print(format_table(result))
    print(f"\nresult: {cfg.output_dir}/result.json  MLflow run {result['mlflow_run_id']} ({result['tracking_uri']})")
    return 0


def _encode_parser(sub) -> None:
    p = sub.add_parser("encode", help="encode a corpus into embedding shards with Ray Data",
                       description="Stream a corpus through a Ray Data actor pool of encoders into resumable "
                                   "Parquet shards plus a manifest.")
    _add_job_args(p)
    p.add_argument("--model", help="built-in name, folder or HF id (default minilm)")
    p.add_argument("--dataset", help="dataset under the data dir (encodes its corpus.jsonl)")
    p.add_argument("--corpus", help="a corpus file instead: BEIR .jsonl or .parquet")
    p.add_argument("--data-dir")
    p.add_argument("--output-dir")
    p.set_defaults(func=_cmd_encode)


def _cmd_encode(args) -> int:
    from .encode.pipeline import run_encode

    cfg = _job_config(EncodeConfig, args)
    m = run_encode(cfg)
    print(f"{m['count']} {m['kind']} vectors (dim {m['dim']}) in {cfg.output_dir}; manifest.json written")
    return 0


def _index_parser(sub) -> None:
    p = sub.add_parser("index", help="build a FAISS or inverted index from encode output",
                       description="Build Flat / HNSW / IVF-PQ (dense) or an inverted index (sparse) from an "
                                   "encode output folder; saved with ids and a checksummed manifest.")
    _add_job_args(p)
    p.add_argument("--embeddings", help="encode output folder")
    p.add_argument("--output-dir")
    p.add_argument("--kind", help="flat | hnsw | ivfpq (dense only)")
    p.set_defaults(func=_cmd_index)


def _cmd_index(args) -> int:
    from .index.build import run_index

    cfg = _job_config(IndexConfig, args, [f"faiss.kind={args.kind}"] if args.kind else [])
    m = run_index(cfg)
    print(f"index of {m['count']} vectors in {cfg.output_dir}")
    return 0


def _mine_parser(sub) -> None:
    p = sub.add_parser("mine", help="mine hard negatives for training queries",
                       description="Retrieve top-k for each training query, drop positives and likely false "
                                   "negatives, and write training examples (JSONL) with their scores.")
    _add_job_args(p)
    p.add_argument("--dataset")
    p.add_argument("--split", help="default train")
    p.add_argument("--data-dir")
    p.add_argument("--retriever", help="any retriever name, e.g. bm25 or minilm")
    p.add_argument("--output", help="examples .jsonl file")
    p.set_defaults(func=_cmd_mine)


def _cmd_mine(args) -> int:
    from .datagen.mine import run_mine

    cfg = _job_config(MineConfig, args)
    run_mine(cfg)
    return 0


class _TrainHelp(argparse.HelpFormatter):
    """Lists the registered objectives only when help is shown: finding them imports the
    objective modules (torch), which every other command would otherwise pay for at startup."""

    def _get_help_string(self, action):
        if action.dest != "objective":
            return super()._get_help_string(action)
        command = self._prog.split()[-1]
        return (f"a registered objective: {', '.join(command_objectives()[command])} "
                f"(default {TRAIN_COMMANDS[command][1]}), or one from objective_modules=[...]")


def _train_parser(sub, name: str) -> None:
    dense = name == "train-dense"
    p = sub.add_parser(
        name, help="train a dense embedder with Ray Train + DeepSpeed" if dense else
        "train a cross-encoder or LLM reranker with Ray Train + DeepSpeed",
        description=("Fine-tune a bi-encoder (encoder-only or decoder LLM embedder)" if dense else
                     "Train a reranker (cross-encoder from an encoder's weights, or an LLM scoring yes/no)")
        + " on mined training examples; checkpoints, resume, MLflow run and an exported model folder.",
        formatter_class=_TrainHelp)
    _add_job_args(p)
    # No argparse choices: objectives from objective_modules register only when the config loads.
    p.add_argument("--objective", help="(listed by _TrainHelp)")
    p.add_argument("--model", help="built-in name, folder or HF id")
    p.add_argument("--examples", help="training examples .jsonl from `rayrag mine`")
    p.add_argument("--dataset", help="dataset whose corpus holds the documents' text")
    p.add_argument("--data-dir")
    p.add_argument("--output-dir")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--use-gpu", action="store_true", default=None)
    p.set_defaults(func=_cmd_train, train_command=name)


def _cmd_train(args) -> int:
    from .train import run_train

    default = [] if args.objective or args.config else [f"objective={TRAIN_COMMANDS[args.train_command][1]}"]
    cfg = _job_config(TrainConfig, args, default)
    if cfg.kind not in TRAIN_COMMANDS[args.train_command][0]:
        raise RayragError(f"objective {cfg.objective!r} trains a {cfg.kind} model; use {command_for(cfg.kind)}")
    run_train(cfg)
    return 0


def _quickstart_parser(sub) -> None:
    p = sub.add_parser("quickstart", help="SciFact end to end: encode, index, evaluate",
                       description="Encode SciFact with Ray Data (MiniLM, SPLADE-tiny), build Flat/HNSW/inverted "
                                   "indexes, evaluate BM25, dense, sparse and hybrid retrieval; print a table.")
    _add_job_args(p)
    p.add_argument("--data-dir", help="folder holding scifact/ (default $RAYRAG_DATA_DIR)")
    p.add_argument("--output-dir", help="default out/quickstart")
    p.set_defaults(func=_cmd_quickstart)


def _cmd_quickstart(args) -> int:
    from .quickstart import run_quickstart

    run_quickstart(_job_config(QuickstartConfig, args))  # ends with the table and what to run next
    return 0


def _data_parser(sub) -> None:
    p = sub.add_parser("data", help="download or check datasets", description="Dataset utilities.")
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="{download,check}")
    d = dsub.add_parser("download", help="fetch a public BEIR dataset (needs a network)",
                        description="Download a BEIR dataset zip into the data dir and validate it.")
    d.add_argument("name", help="BEIR dataset name, e.g. scifact")
    d.add_argument("--data-dir", help="destination (default $RAYRAG_DATA_DIR)")
    d.set_defaults(func=_cmd_download)
    c = dsub.add_parser("check", help="validate a BEIR dataset and print its size",
                        description="Load a BEIR dataset split with every check the jobs run.")
    c.add_argument("name")
    c.add_argument("--split", default="test")
    c.add_argument("--data-dir")
    c.set_defaults(func=_cmd_check)


def _cmd_download(args) -> int:
    import os
    from pathlib import Path

    from .data.download import download_beir
    from .data.locate import ENV

    root = args.data_dir or os.environ.get(ENV)
    if not root:
        raise RayragError(f"no data directory: pass --data-dir or set {ENV}")
    print(f"downloaded to {download_beir(args.name, Path(root).expanduser())}")
    return 0


def _cmd_check(args) -> int:
    from .data import dataset_dir, load_beir

    print(load_beir(dataset_dir(args.name, args.data_dir), args.split))
    return 0


def _models_parser(sub) -> None:
    p = sub.add_parser("models", help="list or resolve model names", description="Built-in model names.")
    msub = p.add_subparsers(dest="models_cmd", required=True, metavar="{list,resolve}")
    msub.add_parser("list", help="list built-in names", description="List built-in model names.").set_defaults(
        func=_cmd_models_list)
    r = msub.add_parser("resolve", help="print the local folder a name resolves to",
                        description="Resolve a built-in name, folder or HF id to a local folder.")
    r.add_argument("name")
    r.set_defaults(func=_cmd_models_resolve)


def _cmd_models_list(args) -> int:
    from .assets import BUILTINS

    for b in BUILTINS.values():
        print(f"{b.name:<14} {b.kind:<7} pip: {b.package:<22} {b.description}")
    return 0


def _cmd_models_resolve(args) -> int:
    from dataclasses import asdict

    from .assets import resolve_model

    print(json.dumps(asdict(resolve_model(args.name)), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rayrag", description="Retrieval for RAG on Ray.")
    sub = p.add_subparsers(dest="command", required=True,
                           metavar="{quickstart,evaluate,encode,index,mine,train-dense,train-reranker,serve,data,models}")
    _quickstart_parser(sub)
    _evaluate_parser(sub)
    _encode_parser(sub)
    _index_parser(sub)
    _mine_parser(sub)
    _train_parser(sub, "train-dense")
    _train_parser(sub, "train-reranker")
    from .serve.cli import register as _serve_parser  # lazy inside: Ray Serve is imported only when run

    _serve_parser(sub)
    _data_parser(sub)
    _models_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    if not os.environ.get("RAY_ADDRESS"):
        # A job that starts its own Ray keeps it on loopback; Ray reads this at import time.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RayragError as e:
        print(f"rayrag: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
