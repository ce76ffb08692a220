"""Sparse query encoders: DiSCo (Lupart et al., arXiv 2410.14609) on the shared runtime.

The student is a SPLADE query encoder (a masked LM, ``models.sparse.splade_reps``) that reads
the whole conversation; it starts from the document encoder's weights (``model``). The document
side is a separate copy of those weights, frozen: never in the engine (so DeepSpeed neither casts
it to bf16, shards it nor checkpoints it), never in the optimizer, in eval mode, run under
``no_grad``. An index built with ``model`` therefore stays valid for the trained query encoder;
the export records the frozen encoder's fingerprint and ``save`` refuses if it ever changed.

A sparse loss is called as ``loss(scores [Q, C], q_reps [Q, V], batch, cfg, step)``: each turn's
candidate scores (pads masked by ``batch["mask"]``), the student's query representations, the
collated batch (``teacher`` [K, Q, C], ``positives`` [Q, C]), the config and the optimizer step.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...errors import ConfigError, DataError
from ...losses import disco_loss, flops, l1
from ...models.sparse import splade_reps
from ..config import TrainConfig
from ..disco_examples import DiscoExample, fit_conversation, load_disco_examples
from ..examples import BatchPlan, check_plan
from .base import Objective, eval_mode
from .registry import ObjectiveSpec, register

META = "rayrag_sparse.json"  # in the exported folder: role, frozen document encoder, its fingerprint


class SpladeQueryEncoder(torch.nn.Module):
    """The trainable side: a masked LM whose forward is SPLADE's query representation [B, V]."""

    def __init__(self, mlm: torch.nn.Module):
        super().__init__()
        self.mlm = mlm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return splade_reps(self.mlm, input_ids, attention_mask)  # [B, V] float32


def fingerprint(module: torch.nn.Module) -> str:
    """sha256 over a module's state (names, dtypes, shapes, bytes): equal iff bit-identical."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class Turn:
    """One turn's share of a micro-batch: the query, every candidate text, labels and teacher scores."""
    query: str
    docs: tuple[str, ...]  # texts, or ids when the document vectors come from an index (disco.doc_index)
    positives: tuple[bool, ...]
    teacher: tuple[tuple[float, ...], ...]  # [K][C]


def reg_weight(cfg: TrainConfig, step: int) -> float:
    """Regulariser weight at optimizer step ``step``: ``w * min(1, step / warmup)^2``.

    Quadratic growth from 0, as SPLADE does (Formal, Piwowarski & Clinchant, SIGIR 2021, after
    Paria et al., ICLR 2020): sparsity pressure only once the ranking signal has shaped the model.
    """
    d = cfg.disco
    if not d.reg_warmup_steps:
        return d.reg_weight
    return d.reg_weight * min(1.0, step / d.reg_warmup_steps) ** 2


class SparseQueryObjective(Objective):
    frozen_reps = None  # DocReps from disco.doc_index (set by ``attach``), or None: encode candidate texts

    @classmethod
    def prepare_data(cls, cfg: TrainConfig) -> dict:
        """DiSCo examples carry their candidates' texts: no BEIR corpus, no BEIR holdout. Turns of
        conversations in ``disco.eval_examples`` are dropped from training (``held_out_examples``)."""
        from ...assets import load_tokenizer

        if cfg.holdout:
            raise ConfigError(f"holdout={cfg.holdout!r} names a BEIR split; DiSCo holds out conversations: set "
                              f"holdout=null and give disco.eval_examples (turns of other conversations)")
        d = cfg.disco
        tok = load_tokenizer(cfg.model)

        def load(path: str, max_candidates):
            # The encoder truncates on the right, which would cut the current turn: drop the
            # oldest turns instead (the formatter's rule), to the student's query length.
            return load_disco_examples(path, d.teachers, d.teacher_weights, d.temperature, max_candidates,
                                       fit_query=lambda q: fit_conversation(q, tok, cfg.query_max_length))

        examples, text = load(cfg.examples, d.max_candidates)
        evaluation, held_out = None, 0
        if d.eval_examples:
            turns, eval_text = load(d.eval_examples, None)  # all candidates: rank as the file has them
            evaluation = {"turns": turns, "text": eval_text}
            convs = {e.conversation_id for e in turns}
            kept = [e for e in examples if e.conversation_id not in convs]
            held_out = len(examples) - len(kept)
            if not kept:
                raise DataError(f"{cfg.examples}: every turn belongs to a conversation of {d.eval_examples}")
            examples = kept
            print(f"[train] dropped {held_out} turns of evaluation conversations from {cfg.examples}; "
                  f"{len(examples)} left", flush=True)
        check_plan(BatchPlan(len(examples), cfg.batch_size, cfg.num_workers, cfg.grad_accum))
        if d.doc_index:  # vectors instead of texts: the workers never run the document encoder
            from ..doc_reps import load_doc_reps

            wanted: dict[str, set[str]] = {}
            for e in examples + (evaluation["turns"] if evaluation else []):
                wanted.setdefault(e.domain, set()).update(e.doc_ids)
            if evaluation:
                evaluation["text"] = {}
            return {"examples": examples, "text": {}, "eval": evaluation, "held_out_examples": held_out,
                    "doc_reps": load_doc_reps(d.doc_index, cfg.model, wanted)}
        return {"examples": examples, "text": {i: text[i] for e in examples for i in e.doc_ids}, "eval": evaluation,
                "held_out_examples": held_out}

    def attach(self, data: dict) -> None:
        super().attach(data)
        self.frozen_reps = data.get("doc_reps")  # train/doc_reps.DocReps, or None: encode the texts

    @property
    def evaluates(self) -> bool:
        return bool(self.cfg.disco.eval_examples)

    def group(self, example: DiscoExample, index: int, epoch: int, text: dict[str, str]) -> Turn:
        docs = tuple(example.doc_ids) if self.frozen_reps is not None else tuple(text[i] for i in example.doc_ids)
        return Turn(example.query, docs, example.positives, example.teacher)

    def build(self, model_path: str) -> torch.nn.Module:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.doc_encoder = AutoModelForMaskedLM.from_pretrained(model_path, dtype=torch.float32)
        self.doc_encoder.requires_grad_(False).eval()
        self.doc_fingerprint = fingerprint(self.doc_encoder)
        # The student: the same weights, loaded again (nothing shared with the frozen copy).
        return SpladeQueryEncoder(AutoModelForMaskedLM.from_pretrained(model_path, dtype=torch.float32))

    def _tok(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")

    def collate(self, groups: Sequence[Turn]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        q = self._tok([g.query for g in groups], cfg.query_max_length)
        docs = [t for g in groups for t in g.docs]
        if self.frozen_reps is not None:
            d = {"d_reps": self.frozen_reps.dense(docs)}  # [sum C, V]
        else:
            d = self._tok(docs, cfg.doc_max_length)  # [sum C, T]
            d = {"d_input_ids": d["input_ids"], "d_attention_mask": d["attention_mask"]}
        width = max(len(g.docs) for g in groups)
        index = torch.zeros(len(groups), width, dtype=torch.long)  # [Q, C] row of each candidate in d
        mask = torch.zeros(len(groups), width, dtype=torch.bool)
        positives = torch.zeros(len(groups), width, dtype=torch.bool)
        teacher = torch.zeros(len(cfg.disco.teachers), len(groups), width)  # [K, Q, C]
        start = 0
        for r, g in enumerate(groups):
            c = len(g.docs)
            index[r, :c] = torch.arange(start, start + c)
            mask[r, :c] = True
            positives[r, :c] = torch.tensor(g.positives)
            teacher[:, r, :c] = torch.tensor(g.teacher)
            start += c
        return {"q_input_ids": q["input_ids"], "q_attention_mask": q["attention_mask"], **d,
                "doc_index": index, "mask": mask, "positives": positives, "teacher": teacher}

    doc_chunk = 32  # documents per frozen forward: the MLM logits are [tokens, vocab] floats

    @torch.no_grad()
    def doc_reps(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[N, V] term weights of the frozen document side: read from the index (``d_reps``), or
        computed by the frozen encoder (moved to the batch's device once) in chunks, since a batch of
        8 turns x 32 candidates x 200 tokens would otherwise need 6 GB of logits."""
        if "d_reps" in batch:
            return batch["d_reps"]
        input_ids, attention_mask = batch["d_input_ids"], batch["d_attention_mask"]
        if next(self.doc_encoder.parameters()).device != input_ids.device:
            self.doc_encoder.to(input_ids.device)
        return torch.cat([splade_reps(self.doc_encoder, input_ids[s:s + self.doc_chunk],
                                      attention_mask[s:s + self.doc_chunk])
                          for s in range(0, len(input_ids), self.doc_chunk)])

    def loss(self, engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        q = engine(batch["q_input_ids"], batch["q_attention_mask"])  # [Q, V]
        d = self.doc_reps(batch)  # [N, V], no graph
        scores = (q.float() @ d.T).gather(1, batch["doc_index"])  # [Q, N] -> [Q, C]
        return self.spec.loss(scores, q, batch, self.cfg, self.step)

    def save(self, module: torch.nn.Module, folder: Path) -> None:
        """A SPLADE folder (``SpladeEncoder``, ``splade:<folder>``) plus ``rayrag_sparse.json``."""
        if fingerprint(self.doc_encoder) != self.doc_fingerprint:
            raise RuntimeError("the frozen document encoder changed during training; the index would not match")
        module.mlm.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        meta = {"kind": "splade", "role": "query", "objective": self.cfg.objective,
                "max_length": self.cfg.query_max_length, "doc_encoder": str(self.cfg.model),
                "doc_encoder_sha256": self.doc_fingerprint, "doc_max_length": self.cfg.doc_max_length,
                "doc_index": self.cfg.disco.doc_index}
        (folder / META).write_text(json.dumps(meta, indent=2) + "\n")

    @torch.no_grad()
    def evaluate(self, module: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Rank each held-out turn's candidates by student score: nDCG@10 and MRR@10 among the
        candidates (not a full retrieval), the same for each teacher's scores, and the mean number
        of non-zero query terms. The full evaluation over the pool is the evaluate job's."""
        from ...eval.metrics import evaluate

        cfg = self.cfg
        if self.eval_data is None:
            raise RuntimeError("no evaluation turns were shipped to the worker (disco.eval_examples is unset)")
        turns, text = self.eval_data["turns"], self.eval_data["text"]
        qrels = {t.query_id: {i: 1 for i, p in zip(t.doc_ids, t.positives) if p} for t in turns}
        runs: dict[str, dict] = {"student": {}, **{k: {} for k in cfg.disco.teachers}}
        terms = []
        with eval_mode(module):
            for s in range(0, len(turns), 16):
                chunk = turns[s:s + 16]
                batch = {k: v.to(device) for k, v in self.collate([self.group(t, 0, 0, text) for t in chunk]).items()}
                q = module(batch["q_input_ids"], batch["q_attention_mask"]).float()  # [B, V]
                d = self.doc_reps(batch)
                scores = (q @ d.T).gather(1, batch["doc_index"]).cpu().numpy()  # [B, C]
                terms.extend((q > 0).sum(1).tolist())
                for r, t in enumerate(chunk):
                    c = len(t.doc_ids)
                    runs["student"][t.query_id] = list(zip(t.doc_ids, scores[r, :c].tolist()))
                    for k, row in zip(cfg.disco.teachers, t.teacher):
                        runs[k][t.query_id] = list(zip(t.doc_ids, row))
        out = {"eval/query_terms": float(np.mean(terms))}
        for name, run in runs.items():
            prefix = "eval/" if name == "student" else f"eval/teacher_{name}/"
            out.update({prefix + m: v for m, v in evaluate(qrels, run, ["ndcg@10", "mrr@10"]).items()})
        return out


def _disco(scores, q_reps, batch, cfg: TrainConfig, step: int) -> torch.Tensor:
    d = cfg.disco
    weights = None if d.teacher_weights is None else torch.tensor(d.teacher_weights, device=scores.device)
    loss = disco_loss(scores, batch["teacher"], batch["mask"], batch["positives"], weights, d.temperature,
                      d.kl_weight, d.contrastive_weight, d.student_scale)
    w = reg_weight(cfg, step)
    if d.reg == "none" or not w:
        return loss
    # FLOPS over the global batch (every worker's queries): see losses/flops.py for the scaling.
    return loss + w * (flops(q_reps, gather=True) if d.reg == "flops" else l1(q_reps))


register(ObjectiveSpec("disco", "sparse", _disco, SparseQueryObjective, needs_teacher_scores=True,
                       summary="DiSCo: KL to rewrites' score distributions + contrastive + FLOPS/L1, frozen docs"))
