"""GPU check for a lent GPU machine (no Ray there): DeepSpeed on CUDA with NCCL, bf16, ZeRO-2.

Runs the training runtime's own pieces (DenseObjective, make_engine, make_optimizer) on one GPU:
  1. NCCL: a process group on 127.0.0.1 and an all-reduce.
  2. Equivalence: 3 fp32 ZeRO-2 DeepSpeed steps vs a plain PyTorch loop (losses).
  3. Speed: time per sample, DeepSpeed bf16 ZeRO-2 engine vs a plain loop under bf16 autocast,
     same model (MiniLM-L6 shape, random weights: the real weights do not travel), batch, texts.

    PYTHONPATH=platform python bench/gpu_check.py --tokenizer <folder with tokenizer files> [--out f.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    import numpy as np
    import torch
    import torch.distributed as dist
    from transformers import AutoTokenizer, BertConfig, BertModel

    from rayrag.config import load_config
    from rayrag.train.config import TrainConfig
    from rayrag.train.engine import make_engine, make_optimizer
    from rayrag.train.examples import Group
    from rayrag.train.objectives import make_objective

    gpu = torch.cuda.is_available()  # CPU (gloo) only to try the script out before spending GPU time
    dev = "cuda" if gpu else "cpu"
    report: dict = {"device": torch.cuda.get_device_name(0) if gpu else "cpu", "torch": torch.__version__}
    dist.init_process_group("nccl" if gpu else "gloo")
    t = torch.ones(4, device=dev)
    dist.all_reduce(t)
    report["all_reduce_ok"] = bool(torch.equal(t, torch.ones(4, device=dev)))
    if gpu:
        report["nccl_version"] = ".".join(map(str, torch.cuda.nccl.version()))

    def sync():
        if gpu:
            torch.cuda.synchronize()

    folder = "/tmp/rayrag-gpu-model"
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                         intermediate_size=1536, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
              ).save_pretrained(folder)
    tok.save_pretrained(folder)
    rng = np.random.default_rng(0)
    vocab = [w for w in tok.get_vocab() if w.isalpha() and len(w) > 2]

    def text(n):
        return " ".join(rng.choice(vocab, n))

    def groups(cfg, n):
        return [Group(text(12), tuple(text(220) for _ in range(cfg.group_size)), None) for _ in range(n)]

    def build(cfg):
        torch.manual_seed(cfg.seed)
        obj = make_objective(cfg)
        return obj, obj.build(folder)

    def batches(obj, cfg, n):
        return [{k: v.to(dev) for k, v in obj.collate(groups(cfg, cfg.batch_size)).items()} for _ in range(n)]

    # 2. fp32 equivalence, 3 steps
    cfg = load_config(TrainConfig, None, [f"model={folder}", "zero_stage=2", "batch_size=16", "group_size=4",
                                          "lr=1e-3", "eval.split=null"])
    obj, module = build(cfg)
    data = batches(obj, cfg, 3)
    engine, _ = make_engine(module, cfg, 1, 3)
    ds_losses = []
    for b in data:
        loss = obj.loss(engine, dict(b))
        engine.backward(loss)
        engine.step()
        ds_losses.append(loss.item())
    obj2, ref = build(cfg)
    ref = ref.to(dev)
    opt, sched = make_optimizer(ref, cfg, 3)
    ref_losses = []
    for b in data:
        loss = obj2.loss(ref, dict(b))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad()
        ref_losses.append(loss.item())
    report["fp32_zero2_losses"], report["fp32_plain_losses"] = ds_losses, ref_losses
    report["fp32_max_abs_diff"] = float(np.max(np.abs(np.array(ds_losses) - np.array(ref_losses))))
    engine = None  # free it before the next measurement

    # 3. bf16 speed
    cfg = load_config(TrainConfig, None, [f"model={folder}", "zero_stage=2", "bf16=true",
                                          f"batch_size={args.batch_size}", "group_size=4", "eval.split=null"])
    obj, module = build(cfg)
    data = batches(obj, cfg, 4)
    engine, _ = make_engine(module, cfg, 1, args.steps + 3)

    def timed(step_fn):
        times = []
        for i in range(args.steps + 3):
            sync()
            t0 = time.perf_counter()
            step_fn(dict(data[i % len(data)]))
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.mean(times[3:]) / cfg.batch_size

    def ds_step(b):
        loss = obj.loss(engine, b)
        engine.backward(loss)
        engine.step()

    ds = timed(ds_step)
    engine = None  # free it before the next measurement
    obj2, ref = build(cfg)
    ref = ref.to(dev)
    opt, sched = make_optimizer(ref, cfg, args.steps + 3)

    def plain_step(b):
        with torch.autocast(dev, dtype=torch.bfloat16):
            loss = obj2.loss(ref, b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad()

    plain = timed(plain_step)
    report.update(batch_queries=cfg.batch_size, docs_per_query=cfg.group_size, doc_tokens=cfg.doc_max_length,
                  deepspeed_bf16_zero2_ms_per_sample=ds * 1e3, plain_autocast_bf16_ms_per_sample=plain * 1e3,
                  ratio=ds / plain, peak_gpu_mem_gib=torch.cuda.max_memory_allocated() / 2 ** 30 if gpu else None)
    print(json.dumps(report, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
