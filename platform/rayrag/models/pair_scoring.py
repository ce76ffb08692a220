"""Scoring (query, document) pairs: one scorer per reranker kind.

* ``cross``: :class:`CrossEncoderScorer`, the single logit of a sequence classifier over
  ``[CLS] query [SEP] document [SEP]``.
* ``llm``: :class:`YesNoScorer`, the log-odds ``logit(" yes") - logit(" no")`` of a causal LM's
  next token after :data:`LLM_PROMPT` (monoT5's "true"/"false" scoring, Nogueira et al. 2020,
  applied to a decoder LM).

The library reranker (``Reranker.score``), Serve's ``RerankEngine`` (pairs from many requests
in one call) and the training objectives' end-of-epoch evaluation all score through these, so
a model scores the same wherever it runs. The input builders are shared with training too, so
the model is trained on exactly the inputs it is later scored on; only the training forward
pass, which needs gradients, stays in the objective.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np
import torch

from .batching import length_sorted_batches

LLM_PROMPT = ("Judge whether the document answers the query. Reply yes or no.\n"
              "Query: {query}\nDocument: {document}\nRelevant:")


def cross_encoder_inputs(tokenizer, queries: Sequence[str], docs: Sequence[str], max_length: int) -> dict:
    """Right-padded ``query [SEP] document`` pairs; only the document is cut when too long."""
    return dict(tokenizer(list(queries), list(docs), padding=True, truncation="only_second",
                          max_length=max_length, return_tensors="pt"))


def llm_pair_inputs(tokenizer, prompt: str, queries: Sequence[str], docs: Sequence[str], max_length: int) -> dict:
    """Left-padded prompts; the document is cut (not the instruction tail) when too long."""
    budget = max_length - len(tokenizer.encode(prompt.format(query="", document=""), add_special_tokens=False))
    texts = []
    for q, d in zip(queries, docs):
        q_ids = tokenizer.encode(q, add_special_tokens=False)[: max(8, budget // 4)]
        d_ids = tokenizer.encode(d, add_special_tokens=False)[: max(8, budget - len(q_ids))]
        texts.append(prompt.format(query=tokenizer.decode(q_ids), document=tokenizer.decode(d_ids)))
    return dict(tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False))


def yes_no_ids(tokenizer) -> tuple[int, int]:
    """Token ids of " yes" / " no" (the leading space is how they follow "Relevant:")."""
    ids = []
    for word in (" yes", " no"):
        toks = tokenizer.encode(word, add_special_tokens=False)
        ids.append(toks[-1])
    return ids[0], ids[1]


def next_token_logits(model, inputs: dict) -> torch.Tensor:
    """[N, V] logits after each left-padded prompt (left padding puts every prompt's end last).

    ``logits_to_keep=1``: the LM head runs on the last position only, never building [N, T, V].
    """
    return model(**inputs, logits_to_keep=1).logits[:, -1]  # [N, V]


class PairScorer(ABC):
    """``scorer(queries, docs) -> float32 [len(docs)]``: ``queries[i]`` against ``docs[i]``.

    Pairs may come from many queries (Serve batches requests together). They are scored in
    length-sorted batches of ``batch_size`` (by document length, longest first): similar lengths
    pad little, and an out-of-memory batch fails first, not last.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int, batch_size: int,
                 device: torch.device | str):
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.batch_size, self.device = int(max_length), int(batch_size), torch.device(device)

    def __call__(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries for {len(docs)} documents")
        out = np.empty(len(docs), dtype=np.float32)
        # no_grad, not inference_mode: during training evaluation ZeRO-3 gathers parameters inside
        # this forward, and inference tensors must not reach the next backward pass.
        with torch.no_grad():
            for idx, batch in length_sorted_batches(docs, self.batch_size, progress=False):
                out[idx] = self.score_batch([queries[i] for i in idx], batch)
        return out

    @abstractmethod
    def score_batch(self, queries: list[str], docs: list[str]) -> np.ndarray:
        """float32 [len(docs)] from one forward pass."""

    def _to_device(self, inputs: dict) -> dict:
        return {k: v.to(self.device) for k, v in inputs.items()}


class CrossEncoderScorer(PairScorer):
    """The sequence classifier's single logit."""

    def score_batch(self, queries: list[str], docs: list[str]) -> np.ndarray:
        enc = self._to_device(cross_encoder_inputs(self.tokenizer, queries, docs, self.max_length))
        return self.model(**enc).logits[:, 0].float().cpu().numpy()  # [B]


class YesNoScorer(PairScorer):
    """``logit(" yes") - logit(" no")`` of the causal LM's next token after ``prompt``."""

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int, batch_size: int,
                 device: torch.device | str, prompt: str = LLM_PROMPT):
        super().__init__(model, tokenizer, max_length, batch_size, device)
        self.prompt = prompt
        self.yes_id, self.no_id = yes_no_ids(tokenizer)

    def score_batch(self, queries: list[str], docs: list[str]) -> np.ndarray:
        enc = self._to_device(llm_pair_inputs(self.tokenizer, self.prompt, queries, docs, self.max_length))
        logits = next_token_logits(self.model, enc)  # [B, V]
        return (logits[:, self.yes_id] - logits[:, self.no_id]).float().cpu().numpy()  # [B]
