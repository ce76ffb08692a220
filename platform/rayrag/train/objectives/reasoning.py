"""LREM objectives (train-reasoning): direct embedding, stage 1 (CoT SFT + InfoNCE), stage 2 (GRPO).

Liu et al., "Large Reasoning Embedding Models" (arXiv 2510.14321). One causal LM embeds queries
after writing a keyword CoT and items without one (``models/reasoning.py``). The three
objectives share the model, the templates, the items' side and the evaluation:
- ``lrem-direct``: ``<query><emb>`` against ``<item><emb>``, InfoNCE only (the paper's baseline).
- ``lrem-sft``: ``<query> <think> cot </think><emb>`` with the teacher's CoT (examples' ``cot``):
  ``sft_weight * L_SFT(CoT tokens) + infonce_weight * InfoNCE``, one forward pass for both.
- ``lrem-grpo``: G CoTs sampled per query from the current policy, each embedded and rewarded
  by the rank of the query's positive among the step's candidate items
  (``losses/lrem_reward.py``); ``pg_weight * L_GRPO + rl_infonce_weight * InfoNCE`` over the
  sampled CoTs. ``pg_weight: 0`` is the control arm: same samples, InfoNCE only.

On-policy, one update per sample batch (the paper's GRPO has no reference model or KL): the
sampling policy is the current one, so the old log-probabilities equal the new ones in value
(ratio 1, no clipping active) and ``old_logp`` is the detached ``logp``. That saves a forward
pass and gives exactly GRPO's gradient for one inner iteration.

Distributed semantics: InfoNCE gathers every worker's items (``gather_negatives``) as the dense
objectives do; rewards, advantages and the policy loss are per worker (each group lives on one
worker, so group normalisation needs nothing from the others). Sampling is seeded by
(seed, epoch, micro-batch, rank): a resumed run draws the same CoTs.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...losses import clip_fraction, group_advantages, grpo_loss, infonce, lrem_reward, lrem_stage1
from ...models.reasoning import ReasoningLimits, ReasoningModel, add_reasoning_tokens, save_reasoning
from ..examples import Group
from .base import Objective, enable_checkpointing, eval_mode
from .registry import ObjectiveSpec, register


def limits_of(cfg) -> ReasoningLimits:
    return ReasoningLimits(max_cot_tokens=cfg.lrem.max_cot_tokens, max_new_tokens=cfg.lrem.max_new_tokens,
                           max_query_tokens=cfg.query_max_length, max_doc_tokens=cfg.doc_max_length)


class ReasoningObjective(Objective):
    mode = "on"  # how evaluation (and the exported model's default) embeds queries: on | off
    needs_cot = False  # the examples must carry a teacher CoT

    def __init__(self, cfg):
        super().__init__(cfg)
        self.samples: list[str] = []  # a few sampled CoTs for the epoch's text artifact
        self.pool: list[str] = []

    def epoch_artifacts(self) -> dict[str, str]:
        out = {f"samples/epoch{self.epoch}.txt": "\n".join(self.samples) + "\n"} if self.samples else {}
        self.samples = []
        return out

    @classmethod
    def prepare_data(cls, cfg) -> dict:
        from ..run import prepare_mined_data

        data = prepare_mined_data(cfg)
        if cls.needs_cot:
            check_cots(data["examples"], cfg)
        return data

    def group(self, example, index: int, epoch: int, text: dict[str, str]) -> Group:
        g = super().group(example, index, epoch, text)
        cot = example.cot
        if cot is not None and self.cfg.lrem.thought_dropout:
            rng = np.random.default_rng([self.cfg.seed, epoch, index, 31])
            if rng.random() < self.cfg.lrem.thought_dropout:
                cot = ""  # trained with an empty thought: InfoNCE only for this query
        return Group(g.query, g.docs, g.teacher, cot)

    def build(self, model_path: str) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        add_reasoning_tokens(self.tokenizer, model)
        enable_checkpointing(model, self.cfg)
        self.rm = ReasoningModel(model, self.tokenizer, limits_of(self.cfg))
        return model

    # --- batches: token ids, left-padded, every sequence ending in <emb> ---
    def collate(self, groups: Sequence[Group]) -> dict[str, torch.Tensor]:
        rm = self.rm
        d_ids, d_mask = _cpu(rm.pad(rm.items([t for g in groups for t in g.docs])))
        batch = {"d_ids": d_ids, "d_mask": d_mask}
        batch.update(self._queries(groups))
        return batch

    def _queries(self, groups: Sequence[Group]) -> dict[str, torch.Tensor]:
        ids, mask = _cpu(self.rm.pad(self.rm.direct_queries([g.query for g in groups])))
        return {"q_ids": ids, "q_mask": mask}

    def _items(self, engine, batch) -> torch.Tensor:
        return self.rm.forward(batch["d_ids"], batch["d_mask"], engine)[1]  # [Q*g, H]

    def _infonce(self, q: torch.Tensor, d: torch.Tensor, per_query: int = 1) -> torch.Tensor:
        cfg = self.cfg
        return infonce(q, d, cfg.temperature, cfg.group_size, gather=cfg.gather_negatives, per_query=per_query)

    def loss(self, engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        q = self.rm.forward(batch["q_ids"], batch["q_mask"], engine)[1]
        return self._infonce(q, self._items(engine, batch))

    def save(self, module: torch.nn.Module, folder: Path) -> None:
        save_reasoning(module, self.tokenizer, folder, limits_of(self.cfg))

    @torch.no_grad()
    def evaluate(self, module: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """The served search path (``search/reasoning.py``) over the module being trained."""
        from ...search.reasoning import ReasoningRetriever
        from .evaluation import eval_split, score_run

        ds = eval_split(self.cfg, self.eval_data)
        retriever = ReasoningRetriever(ReasoningModel(module, self.tokenizer, self.rm.limits), mode=self.mode,
                                       name="eval")
        with eval_mode(module):
            retriever.index(ds.corpus)
            run = retriever.search(ds.queries, 100)
        return {**score_run(self.cfg, ds, run), **{f"eval/{k}": v for k, v in retriever.stats.items()}}


def check_cots(examples, cfg) -> None:
    """Driver side, before any worker starts: every example has a CoT within the token limit."""
    from ...assets import load_tokenizer
    from ...errors import DataError

    missing = [ex.query_id or ex.query[:40] for ex in examples if not (ex.cot or "").strip()]
    if missing:
        raise DataError(f"{cfg.examples}: {len(missing)} example(s) have no 'cot' (first: {missing[:3]}); "
                        f"objective {cfg.objective} trains on a teacher CoT per query: write them with the cot job")
    tok = load_tokenizer(cfg.model)
    limit = cfg.lrem.max_cot_tokens
    lengths = [len(ids) for ids in tok([ex.cot for ex in examples], add_special_tokens=False)["input_ids"]]
    over = [(ex.query_id, n) for ex, n in zip(examples, lengths) if n > limit]
    if over:
        raise DataError(f"{cfg.examples}: {len(over)} CoT(s) are longer than lrem.max_cot_tokens={limit} tokens "
                        f"(first: {over[:3]}); shorten them in the cot job or raise the limit")


def _any_worker(flag: torch.Tensor) -> bool:
    """Whether ``flag`` holds on any worker (collective: every worker must call it alike)."""
    from ...distributed import gather_with_grad

    return bool(gather_with_grad(flag.detach().float().view(1)).sum() > 0)


def _cpu(pair):
    return pair[0].cpu(), pair[1].cpu()


class DirectObjective(ReasoningObjective):
    """``<query><emb>``: the same model and items, no reasoning (arm a)."""
    mode = "off"


class SftObjective(ReasoningObjective):
    """Stage 1: the teacher's CoT is both an SFT target and the text the query embeds after."""
    needs_cot = True

    def _queries(self, groups: Sequence[Group]) -> dict[str, torch.Tensor]:
        rm = self.rm
        prompts = rm.query_prompts([g.query for g in groups])
        cots = [[] if not g.cot else c for g, c in zip(groups, rm.cot_ids([g.cot or "" for g in groups]))]
        seqs = rm.query_with_cot(prompts, cots)
        ids, mask = _cpu(rm.pad(seqs))
        target = torch.zeros_like(ids)
        for i, c in enumerate(cots):
            # the CoT and the </think> that closes it (an empty/dropped thought: nothing to learn)
            if c:
                target[i, ids.shape[1] - 1 - len(c):ids.shape[1] - 1] = 1
        return {"q_ids": ids, "q_mask": mask, "q_target": target}

    def loss(self, engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        lrem = self.cfg.lrem
        window = self.rm.limits.max_new_tokens + 3  # <think> .. CoT .. </think> <emb>
        logits, q = self.rm.forward(batch["q_ids"], batch["q_mask"], engine, logits_window=window)
        d = self._items(engine, batch)
        w = min(window, batch["q_ids"].shape[1])
        cfg = self.cfg
        # every query's thought dropped in this micro-batch on every worker: InfoNCE alone
        sft = lrem.sft_weight if _any_worker(batch["q_target"].any()) else 0.0
        return lrem_stage1(logits[:, -w:], batch["q_ids"][:, -w:], batch["q_target"][:, -w:], q, d, sft,
                           lrem.infonce_weight, cfg.temperature, cfg.group_size, gather=cfg.gather_negatives)


class GrpoObjective(ReasoningObjective):
    """Stage 2: sample, reward, GRPO on the CoT tokens + InfoNCE on the sampled CoTs' embeddings."""

    def _queries(self, groups: Sequence[Group]) -> dict[str, torch.Tensor]:
        ids, mask = _cpu(self.rm.pad(self.rm.query_prompts([g.query for g in groups])))
        return {"p_ids": ids, "p_mask": mask}

    def group(self, example, index: int, epoch: int, text: dict[str, str]) -> Group:
        g = super().group(example, index, epoch, text)
        n = self.cfg.lrem.hard_candidates
        if not n:
            return g
        pool = [text[d] for d in example.negatives[:self.cfg.negatives_from_top] if text[d] not in g.docs]
        return replace(g, candidates=tuple(pool[:n]))

    def collate(self, groups: Sequence[Group]) -> dict[str, torch.Tensor]:
        batch = super().collate(groups)
        hard = [t for g in groups for t in g.candidates]
        if hard:
            batch["c_ids"], batch["c_mask"] = _cpu(self.rm.pad(self.rm.items(hard)))
        if self.cfg.lrem.corpus_cache:  # the batch's items by place in the pool, kept out of the cache's rows
            batch["d_pool"] = torch.tensor([self.pool_at.get(t, -1) for g in groups for t in (*g.docs, *g.candidates)])
        return batch

    def loss(self, engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from ...distributed import rank, world_size

        cfg, lrem, rm = self.cfg, self.cfg.lrem, self.rm
        G, g = lrem.num_samples, cfg.group_size
        prompts = [row[m.bool()].tolist() for row, m in zip(batch["p_ids"].cpu(), batch["p_mask"].cpu())]
        Q = len(prompts)
        seed = int(np.random.default_rng([cfg.seed, self.epoch, self.micro, rank(), 17]).integers(2 ** 31))
        with eval_mode(engine.module):
            synced = cfg.zero_stage == 3 and world_size() > 1  # ZeRO-3: all workers generate in step
            cots = [c for per in rm.generate(prompts, sample=True, num_samples=G, seed=seed, synced=synced,
                                             temperature=lrem.sample_temperature) for c in per]  # [Q*G]
        seqs = rm.query_with_cot([p for p in prompts for _ in range(G)], [c.ids for c in cots])
        ids, mask = rm.pad(seqs)
        window = min(lrem.max_new_tokens + 3, ids.shape[1])
        logits, q = rm.forward(ids, mask, engine, logits_window=window)  # [Q*G, W, V], [Q*G, H]
        d = self._items(engine, batch)  # [Q*g, H]

        # reward: rank of each sample's own positive among the step's candidate items
        with torch.no_grad():
            hard = (self.rm.forward(batch["c_ids"], batch["c_mask"], engine)[1] if "c_ids" in batch
                    else d.new_zeros((0, d.shape[1])))
            cands = torch.cat([d.detach(), self._corpus_candidates(seed, d.device), hard,
                               self._cached_candidates(batch, d.device)])
            scores = q.detach() @ cands.T  # [Q*G, N]
            own = (torch.arange(Q * G, device=q.device) // G) * g
            rank_ = 1 + (scores > scores.gather(1, own[:, None])).sum(1)
            reward, parts = lrem_reward(torch.tensor([c.valid for c in cots]), torch.tensor([c.length for c in cots]),
                                        rank_.cpu(), cands.shape[0], lrem.max_cot_tokens, lrem.reward_weights)
            adv, keep = group_advantages(reward.view(Q, G))

        # log-probabilities of the tokens the policy chose (forced </think> and <emb> excluded)
        chosen = torch.zeros_like(ids[:, -window:])
        for i, c in enumerate(cots):
            forced = 1 + int(not c.closed)  # <emb>, and </think> when we closed it
            end = window - forced
            chosen[i, end - len(c.ids):end] = 1
        chosen = chosen * keep.to(chosen.device).repeat_interleave(G)[:, None]
        logp = _token_logp(logits, ids[:, -window:], chosen)
        pg = grpo_loss(logp, logp.detach(), adv.flatten().to(logp.device), chosen[:, 1:], lrem.clip_eps)
        nce = self._infonce(q, d, per_query=G)  # every sample's embedding, the items gathered once
        loss = lrem.pg_weight * pg + lrem.rl_infonce_weight * nce

        with torch.no_grad():
            self.metrics = {
                "rl/reward": float(reward.mean()), **{f"rl/reward_{k}": float(v.mean()) for k, v in parts.items()},
                "rl/format_valid": float(np.mean([c.valid for c in cots])),
                "rl/cot_tokens": float(np.mean([c.length for c in cots])),
                "rl/zero_variance_groups": float(1 - keep.float().mean()),
                "rl/item_cosine": float(_mean_offdiag_cosine(d.detach())),
                "rl/clip_fraction": clip_fraction(logp, logp.detach(), chosen[:, 1:], lrem.clip_eps),
                "rl/pg_loss": float(pg), "rl/infonce": float(nce), "rl/candidates": float(cands.shape[0])}
            if len(self.samples) < 32:
                self.samples += [f"{self.tokenizer.decode(p, skip_special_tokens=True)!r} -> {c.text!r} "
                                 f"(valid={c.valid}, reward={float(r):.3f})"
                                 for p, c, r in zip([p for p in prompts for _ in range(G)][::G], cots[::G], reward[::G])]
        return loss

    def _corpus_candidates(self, seed: int, device) -> torch.Tensor:
        """``lrem.corpus_candidates`` passages of the shipped texts, embedded without gradient."""
        n = self.cfg.lrem.corpus_candidates
        if not n or not self.pool:
            return torch.zeros((0, self.rm.dim), device=device)
        rng = np.random.default_rng([seed, 3])
        picks = [self.pool[i] for i in rng.choice(len(self.pool), size=min(n, len(self.pool)), replace=False)]
        return torch.from_numpy(self.rm.embed(self.rm.items(picks))).to(device)

    def _cached_candidates(self, batch, device) -> torch.Tensor:
        """``lrem.corpus_cache`` passages embedded without gradient at the epoch's start and every
        ``cache_refresh_steps`` optimizer steps after, less the batch's own items (their fresh
        copies are candidates already; a stale copy of the positive would compete with itself).

        Keyed by (epoch, step in the epoch // refresh): a run resumed at a checkpoint on a refresh
        (epoch ends, or ``checkpoint_every`` a multiple of the refresh) embeds the same passages
        with the same weights as the uninterrupted run."""
        lrem = self.cfg.lrem
        if not lrem.corpus_cache or not self.pool:
            return torch.zeros((0, self.rm.dim), device=device)
        key = (self.epoch, self.micro // self.cfg.grad_accum // lrem.cache_refresh_steps)
        if self.cache_key != key:
            rng = np.random.default_rng([self.cfg.seed, *key, 5])
            rows = np.sort(rng.choice(len(self.pool), size=min(lrem.corpus_cache, len(self.pool)), replace=False))
            with eval_mode(self.rm.model):
                emb = self.rm.embed(self.rm.items([self.pool[i] for i in rows]))
            self.cache, self.cache_rows, self.cache_key = torch.from_numpy(emb), torch.from_numpy(rows), key
        keep = ~torch.isin(self.cache_rows, batch["d_pool"])
        return self.cache[keep].to(device)

    def attach(self, data: dict) -> None:
        super().attach(data)
        self.pool = list(data.get("text", {}).values())
        self.pool_at = {t: i for i, t in enumerate(self.pool)}
        self.cache_key, self.cache, self.cache_rows = None, None, None


def _token_logp(logits: torch.Tensor, ids: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """[B, W-1] log-probability of token t+1 given the prefix, computed only where ``chosen``
    marks it (a full log_softmax over [B, W, V] would be most of the step's memory)."""
    sel = chosen[:, 1:].bool()
    out = torch.zeros(sel.shape, dtype=logits.dtype, device=logits.device)
    if bool(sel.any()):
        rows = torch.log_softmax(logits[:, :-1][sel].float(), dim=-1)  # [n, V]
        out = out.masked_scatter(sel, rows.gather(1, ids[:, 1:][sel][:, None]).squeeze(1).to(out.dtype))
    return out


def _mean_offdiag_cosine(x: torch.Tensor) -> torch.Tensor:
    """Mean cosine between different items: near 1 means the embeddings are collapsing."""
    n = x.shape[0]
    if n < 2:
        return torch.tensor(0.0)
    s = x @ x.T
    return (s.sum() - s.diagonal().sum()) / (n * (n - 1))


register(ObjectiveSpec("lrem-direct", "reasoning", infonce, DirectObjective,
                       summary="LREM baseline: <query><emb> against <item><emb>, InfoNCE"))
register(ObjectiveSpec("lrem-sft", "reasoning", lrem_stage1, SftObjective,
                       summary="LREM stage 1: SFT on the examples' CoT + InfoNCE at <emb>"))
register(ObjectiveSpec("lrem-grpo", "reasoning", grpo_loss, GrpoObjective,
                       summary="LREM stage 2: GRPO on sampled CoTs (rank reward) + InfoNCE"))
