"""DiSCo at query time: the student against rewrite-then-retrieve, on real MTRAG turns.

Per turn, end to end from the chat history to the top 10 of one domain's SPLADE pool index:
- **student**: format the history (the one formatter), encode it with the DiSCo student, search.
- **rewrite-then-retrieve** (the baseline): an LLM writes a standalone rewrite (the rewrite job's
  prompt, greedy, its max_new_tokens), SPLADE encodes the rewrite, search.
Both run one turn at a time in this process, on the same cores, over the same turns; the ratio
of their mean latencies is the figure. Sparsity: mean non-zero terms per query of the student's
history encoding against the teacher's (SPLADE on the human rewrite), over every turn of the domain.

    python bench/disco_latency.py --student out/train/mtrag-disco-fold0/model --domain govt
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--student", required=True, help="a DiSCo student folder (train_sparse's model/)")
    ap.add_argument("--index", default="out/mtrag/index-splade-{domain}")
    ap.add_argument("--domain", default="govt")
    ap.add_argument("--rewriter", default="smollm2-135m", help="built-in name, HF id or folder")
    ap.add_argument("--teacher", default="splade-tiny", help="the SPLADE model that encodes rewrites")
    ap.add_argument("--turns", type=int, default=20, help="turns timed per arm (sparsity uses all)")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="as jobs/configs/rewrite_mtrag_smollm2.yaml")
    ap.add_argument("--max-tokens", type=int, default=256, help="history budget, as training and evaluation")
    ap.add_argument("--data-dir", default=os.environ.get("RAYRAG_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--out", default="out/bench/disco_latency.json")
    args = ap.parse_args()

    import torch

    from rayrag.assets import resolve_model
    from rayrag.data.conversation import USER, format_conversation
    from rayrag.data.mtrag import load_human_tasks
    from rayrag.datagen.rewriters import ModelRewriter
    from rayrag.index.store import load_index
    from rayrag.index.topk import top_k_rows
    from rayrag.models.sparse import SpladeEncoder

    torch.set_num_threads(os.cpu_count() or 1)
    turns = [t for t in load_human_tasks(Path(args.data_dir) / "mtrag") if t.domain == args.domain]
    student = SpladeEncoder(args.student, max_length=args.max_tokens)
    teacher = SpladeEncoder(resolve_model(args.teacher).path, max_length=args.max_tokens)
    postings = load_index(args.index.format(domain=args.domain), expected_dim=student.vocab_size).index.postings
    rewriter = ModelRewriter(resolve_model(args.rewriter).path, max_new_tokens=args.max_new_tokens,
                             max_input_tokens=1024, batch_size=1, with_agent=False)
    tok = student.tokenizer

    def search(rep) -> np.ndarray:
        return top_k_rows((rep @ postings).toarray(), 10)[0]

    def student_arm(t) -> None:
        search(student.encode([format_conversation(t.messages, tok, args.max_tokens)], progress=False))

    def rewrite_arm(t) -> str:
        text = rewriter.rewrite([(t.qid, t.messages)])[0].text
        search(teacher.encode([format_conversation([(USER, text)], tok, args.max_tokens)], progress=False))
        return text

    timed = turns[:args.turns]
    student_arm(timed[0]), rewrite_arm(timed[0])  # warm-up: first calls allocate
    arms = {}
    for name, fn in (("student", student_arm), ("rewrite_then_retrieve", rewrite_arm)):
        ms = []
        for t in timed:
            t0 = time.perf_counter()
            fn(t)
            ms.append(1000 * (time.perf_counter() - t0))
        arms[name] = {"mean_ms": float(np.mean(ms)), "p50_ms": float(np.percentile(ms, 50)),
                      "p99_ms": float(np.percentile(ms, 99))}
    hist = student.encode([format_conversation(t.messages, tok, args.max_tokens) for t in turns], progress=False)
    rew = teacher.encode([format_conversation([(USER, t.rewrite)], tok, args.max_tokens) for t in turns],
                         progress=False)
    nnz = lambda m: float(np.mean(np.diff(m.indptr)))  # noqa: E731 - rows of a CSR matrix
    report = {"domain": args.domain, "turns_timed": len(timed), "turns_sparsity": len(turns),
              "threads": torch.get_num_threads(), "arms": arms,
              "latency_ratio_rewrite_over_student": arms["rewrite_then_retrieve"]["mean_ms"] / arms["student"]["mean_ms"],
              "nnz_student_history": nnz(hist), "nnz_teacher_rewrite": nnz(rew),
              "nnz_ratio_student_over_teacher": nnz(hist) / nnz(rew)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
