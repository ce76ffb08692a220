"""Bi-encoder objectives: InfoNCE, KL listwise and MarginMSE over query/document embeddings.

Encoder-only models (MiniLM, mean pooling) and decoder LLM embedders (SmolLM2, last-token
pooling, an instruction prefix on queries, optional LoRA and gradient checkpointing) share
this code; only pooling, prefixes and padding side differ.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...losses import infonce, kl_listwise, margin_mse
from ...models.dense import POOLINGS, pool
from ..examples import Group
from .base import Objective, apply_lora, enable_checkpointing, eval_mode, unwrap_peft
from .registry import ObjectiveSpec, register

ST_POOLING = {"mean": "mean", "cls": "cls", "last": "lasttoken"}


class BiEncoder(torch.nn.Module):
    """One shared encoder for queries and documents; forward returns both embeddings."""

    def __init__(self, backbone: torch.nn.Module, pooling: str):
        super().__init__()
        self.backbone, self.pooling = backbone, pooling

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, T, H]
        return F.normalize(pool(hidden, attention_mask, self.pooling).float(), dim=-1)  # [B, H]

    def forward(self, q_input_ids, q_attention_mask, d_input_ids, d_attention_mask):
        # One call for both sides: DeepSpeed hooks (ZeRO-3 gathering) run once per step.
        return self.embed(q_input_ids, q_attention_mask), self.embed(d_input_ids, d_attention_mask)


class DenseObjective(Objective):
    def build(self, model_path: str) -> torch.nn.Module:
        from transformers import AutoModel

        from ...assets import resolve_model
        from ...models.dense import load_tokenizer, model_pooling

        cfg = self.cfg
        self.pooling = cfg.pooling or resolve_model(cfg.model).pooling or model_pooling(model_path) or "mean"
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}")
        self.tokenizer = load_tokenizer(model_path, self.pooling, cfg.append_eos)
        backbone = AutoModel.from_pretrained(model_path, dtype=torch.float32)
        pooler = getattr(backbone, "pooler", None)
        if pooler is not None:
            # BERT's pooler is unused by mean/CLS-token pooling: frozen, it gets no gradient and
            # stays out of the optimizer (and the exported folder keeps the original weights).
            pooler.requires_grad_(False)
        enable_checkpointing(backbone, cfg)
        backbone = apply_lora(backbone, cfg, "FEATURE_EXTRACTION")
        return BiEncoder(backbone, self.pooling)

    def _tok(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")

    def collate(self, groups: Sequence[Group]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        q = self._tok([cfg.query_prefix + g.query for g in groups], cfg.query_max_length)
        d = self._tok([cfg.doc_prefix + t for g in groups for t in g.docs], cfg.doc_max_length)  # [Q*g]
        batch = {"q_input_ids": q["input_ids"], "q_attention_mask": q["attention_mask"],
                 "d_input_ids": d["input_ids"], "d_attention_mask": d["attention_mask"]}
        if groups and groups[0].teacher is not None:
            batch["teacher"] = torch.tensor([g.teacher for g in groups], dtype=torch.float32)  # [Q, g]
        return batch

    def loss(self, engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The registered loss on this batch's embeddings.

        A dense objective's loss is called as ``loss(q, d, teacher, cfg)``: q [Q, H] and d [Q*g, H]
        L2-normalised, each query's g documents in a row with its positive first; teacher [Q, g]
        scores when the examples carry them, else None; cfg the TrainConfig. Returns a scalar.
        """
        teacher = batch.pop("teacher", None)
        q, d = engine(**batch)  # [Q, H], [Q*g, H]
        return self.spec.loss(q, d, teacher, self.cfg)

    def save(self, module: torch.nn.Module, folder: Path) -> None:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

        backbone = unwrap_peft(module.backbone)
        backbone.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        # The sentence-transformers files (modules.json, pooling, prompts) come from the library
        # itself, so SentenceTransformer(folder) reproduces our embeddings exactly.
        # Text modality only: with a chat template in the tokenizer (LLM embedders) sentence-
        # transformers would otherwise wrap inputs in it, which training never did.
        t = Transformer(str(folder), max_seq_length=self.cfg.max_length, module_output_name="token_embeddings",
                        modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}})
        if self.pooling == "last":
            t.tokenizer.padding_side = "right"
        p = Pooling(t.get_embedding_dimension(), pooling_mode=ST_POOLING[self.pooling])
        prompts = {k: v for k, v in (("query", self.cfg.query_prefix), ("document", self.cfg.doc_prefix)) if v}
        SentenceTransformer(modules=[t, p, Normalize()], prompts=prompts or None, device="cpu").save(str(folder))

    @torch.no_grad()
    def evaluate(self, module: torch.nn.Module, device: torch.device) -> dict[str, float]:
        from ...index.topk import top_k_rows
        from .evaluation import eval_split, score_run

        cfg = self.cfg
        ds = eval_split(cfg, self.eval_data)
        doc_ids, qids = list(ds.corpus), list(ds.queries)
        with eval_mode(module):
            docs = self._encode(module, [cfg.doc_prefix + ds.corpus[i].full_text for i in doc_ids],
                                cfg.max_length, device)
            qs = self._encode(module, [cfg.query_prefix + ds.queries[i] for i in qids], cfg.query_max_length, device)
        idx, vals = top_k_rows(qs @ docs.T, 100)
        run = {q: [(doc_ids[j], float(s)) for j, s in zip(idx[r], vals[r])] for r, q in enumerate(qids)}
        return score_run(cfg, ds, run)

    def _encode(self, module, texts: list[str], max_length: int, device) -> np.ndarray:
        from ...models.batching import encode_in_order

        def fn(batch: list[str]) -> np.ndarray:
            enc = self._tok(batch, max_length).to(device)
            return module.embed(enc["input_ids"], enc["attention_mask"]).float().cpu().numpy()

        dim = module.backbone.config.hidden_size
        return encode_in_order(texts, 64, fn, dim, desc="eval-encode")


def group_scores(q: torch.Tensor, d: torch.Tensor, group_size: int) -> torch.Tensor:
    """[Q, H] queries x [Q*g, H] documents -> [Q, g] cosine of each query with its own group."""
    return torch.einsum("qh,qgh->qg", q, d.view(q.shape[0], group_size, -1))


def _infonce(q, d, teacher, cfg) -> torch.Tensor:
    return infonce(q, d, cfg.temperature, cfg.group_size, gather=cfg.gather_negatives)


def _kl(q, d, teacher, cfg) -> torch.Tensor:
    return kl_listwise(group_scores(q, d, cfg.group_size) / cfg.temperature, teacher)


def _margin_mse(q, d, teacher, cfg) -> torch.Tensor:
    scores = group_scores(q, d, cfg.group_size)  # [Q, 2]
    return margin_mse(scores[:, 0], scores[:, 1], teacher[:, 0], teacher[:, 1])


register(ObjectiveSpec("infonce", "dense", _infonce, DenseObjective,
                       summary="contrastive: in-batch (all workers') + mined hard negatives"))
register(ObjectiveSpec("kl", "dense", _kl, DenseObjective, needs_teacher_scores=True, min_group_size=2,
                       summary="listwise distillation from the examples' teacher scores"))
register(ObjectiveSpec("margin_mse", "dense", _margin_mse, DenseObjective, needs_teacher_scores=True,
                       min_group_size=2, max_group_size=2,
                       summary="pairwise distillation: one positive against one negative"))
