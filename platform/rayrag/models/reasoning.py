"""A reasoning embedder (LREM): a causal LM that writes a short chain of thought, then embeds.

Liu et al., "Large Reasoning Embedding Models" (arXiv 2510.14321). Three tokens are added to the
tokenizer and the embedding table: ``<think>``, ``</think>``, ``<emb>``.
- Query: ``<query> <think> kw1, kw2, ... </think><emb>``: the model writes the keywords; the
  embedding is the last layer's hidden state at ``<emb>``.
- Item (document): ``<text><emb>``, no reasoning.
- Direct (no reasoning, the paper's baseline and ``reasoning: off``): ``<query><emb>``.
Embeddings are L2-normalised and compared by cosine (dot product).

Everything works on token ids, not re-tokenised text, so the CoT that was sampled is exactly
the CoT that is embedded and scored (a decode/encode round trip can merge or split tokens).
An exported model is a plain HF folder (``AutoModelForCausalLM`` loads it; its tokenizer
carries the three tokens) plus ``rayrag_reasoning.json`` with the limits it was trained with.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .batching import encode_in_order, progress_bar

THINK, END_THINK, EMB = "<think>", "</think>", "<emb>"
METADATA = "rayrag_reasoning.json"
# The paper's CoT is a keyword list: comma-separated items, none empty, on one line. An item is
# a term or a short phrase (at most MAX_KEYWORD_WORDS words), and nothing ends a sentence: a
# prose sentence that closes in time is not a keyword list (a base LM writes those).
MAX_KEYWORD_WORDS = 4
_SENTENCE_END = re.compile(r"[.!?;:](\s|$)")


def is_keyword_list(text: str) -> bool:
    """Whether ``text`` is a CoT in the keyword format (the format reward's test)."""
    return ("\n" not in text and not _SENTENCE_END.search(text.strip())
            and all(1 <= len(item.split()) <= MAX_KEYWORD_WORDS for item in text.split(",")))


@dataclass(frozen=True)
class ReasoningLimits:
    max_cot_tokens: int = 16  # the length reward's limit (the paper: 16; 32 about the same, 48/64 worse)
    max_new_tokens: int = 24  # generation budget: room past the limit, so the length reward can bite
    max_query_tokens: int = 64
    max_doc_tokens: int = 256

    def __post_init__(self):
        if not 1 <= self.max_cot_tokens <= self.max_new_tokens:
            raise ValueError(f"need 1 <= max_cot_tokens <= max_new_tokens, got {self.max_cot_tokens}, "
                             f"{self.max_new_tokens}")
        if self.max_query_tokens < 1 or self.max_doc_tokens < 1:
            raise ValueError("max_query_tokens and max_doc_tokens must be >= 1")


@dataclass
class Cot:
    """One generated chain of thought."""
    ids: list[int]  # the tokens the model chose, ``</think>`` included when it wrote it
    text: str  # the keywords, decoded (without ``</think>``)
    closed: bool  # the model wrote ``</think>`` itself
    valid: bool  # closed, no special token inside, a keyword list (``is_keyword_list``)

    @property
    def length(self) -> int:
        """CoT tokens, not counting ``</think>``."""
        return len(self.ids) - int(self.closed)


def add_reasoning_tokens(tokenizer, model: torch.nn.Module | None = None) -> None:
    """Add the three tokens (if missing) and grow the model's embedding table to match.

    ``<think>`` and ``<emb>`` start at the mean of the existing rows, which keeps their hidden
    states in the range of real tokens (random rows can dominate). ``</think>`` must also be
    *written* by the model, and with tied input/output embeddings (SmolLM2, Qwen) a mean row's
    logit is the mean logit: measured on SmolLM2-135M after a keyword list, about 17 nats below
    the top token, so stage-1 SFT never raised it far enough and the model never closed its
    thought (greedy format-valid 0.00 on dev). It starts instead as a copy of the line break,
    the token a base LM already ranks 2nd-4th at the end of a keyword list (``,`` first).
    """
    missing = [t for t in (THINK, END_THINK, EMB) if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)  # never split, and skipped by decode(skip_special_tokens)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model is None:
        return
    emb = model.get_input_embeddings()
    old = emb.weight.shape[0]
    if len(tokenizer) > old:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        end = tokenizer.convert_tokens_to_ids(END_THINK)
        line = _line_break_id(tokenizer)
        with torch.no_grad():
            tables = [model.get_input_embeddings().weight]
            out = model.get_output_embeddings()
            if out is not None and out.weight is not tables[0]:
                tables.append(out.weight)
            for w in tables:
                w[old:] = w[:old].mean(0, keepdim=True)
                if end >= old and line is not None and line < old:
                    w[end] = w[line]


def _line_break_id(tokenizer) -> int | None:
    """The id of a line break when the tokenizer writes it as one token (else None: mean row)."""
    ids = tokenizer.encode("\n", add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def token_ids(tokenizer) -> tuple[int, int, int]:
    """(``<think>``, ``</think>``, ``<emb>``) ids; a clear error when the tokenizer lacks them."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in (THINK, END_THINK, EMB) if t not in vocab]
    if missing:
        raise ValueError(f"the tokenizer has no {missing} token(s): not a reasoning embedder's tokenizer "
                         f"(add_reasoning_tokens adds them when training starts from a plain LM)")
    return vocab[THINK], vocab[END_THINK], vocab[EMB]


class ReasoningModel:
    """Templates, bounded generation and ``<emb>`` embeddings around a causal LM and its tokenizer.

    Training and inference share it: the objectives call ``forward`` inside the engine, the
    encoder (``ReasoningEncoder``) and the RL sampler call ``generate`` / ``embed``.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, limits: ReasoningLimits = ReasoningLimits()):
        self.model, self.tokenizer, self.limits = model, tokenizer, limits
        self.think_id, self.end_id, self.emb_id = token_ids(tokenizer)
        self.special_ids = set(tokenizer.all_special_ids) | {self.think_id, self.end_id, self.emb_id}
        self.pad_id = tokenizer.pad_token_id
        if self.pad_id is None:
            raise ValueError("the tokenizer has neither a pad nor an EOS token")

    # --- templates (token ids) ---
    def _text_ids(self, texts: Sequence[str], limit: int) -> list[list[int]]:
        enc = self.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=limit)
        return [list(ids) for ids in enc["input_ids"]]

    def query_prompts(self, queries: Sequence[str]) -> list[list[int]]:
        """``<query> <think>``: what the model continues with its keywords."""
        return [ids + [self.think_id] for ids in self._text_ids(queries, self.limits.max_query_tokens)]

    def query_with_cot(self, prompts: Sequence[list[int]], cots: Sequence[Sequence[int]]) -> list[list[int]]:
        """prompt + CoT + ``</think>`` (unless the CoT closed itself) + ``<emb>``."""
        out = []
        for p, c in zip(prompts, cots, strict=True):
            c = list(c)
            out.append(p + c + ([] if c and c[-1] == self.end_id else [self.end_id]) + [self.emb_id])
        return out

    def cot_ids(self, cots: Sequence[str]) -> list[list[int]]:
        """Keyword text (from a teacher) -> CoT token ids, closed with ``</think>``."""
        return [ids + [self.end_id] for ids in self._text_ids(cots, self.limits.max_new_tokens)]

    def direct_queries(self, queries: Sequence[str]) -> list[list[int]]:
        return [ids + [self.emb_id] for ids in self._text_ids(queries, self.limits.max_query_tokens)]

    def items(self, texts: Sequence[str]) -> list[list[int]]:
        return [ids + [self.emb_id] for ids in self._text_ids(texts, self.limits.max_doc_tokens)]

    # --- tensors ---
    def pad(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-pad id lists into (input_ids, attention_mask) on the model's device.

        Left padding puts every sequence's last token (``<emb>``) in the last column, and the
        CoT in a fixed window before it, so logits are needed for the last few columns only."""
        n = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, n - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, n - len(s):] = 1
        device = next(self.model.parameters()).device
        return ids.to(device), mask.to(device)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, module: torch.nn.Module | None = None,
                logits_window: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits of the last ``logits_window`` columns [B, W, V], normalised ``<emb>`` embeddings
        [B, H]) in one pass over left-padded sequences ending in ``<emb>``. ``module`` is the
        engine wrapping the model (training); positions count real tokens only, as in generation,
        so an embedding does not depend on how much padding its batch needed."""
        if not bool((ids[:, -1] == self.emb_id).all()):
            raise ValueError("every sequence must end with <emb> (left-padded)")
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = (module or self.model)(input_ids=ids, attention_mask=mask, position_ids=positions,
                                     output_hidden_states=True, logits_to_keep=logits_window)
        return out.logits, F.normalize(out.hidden_states[-1][:, -1].float(), dim=-1)

    @torch.no_grad()
    def embed(self, seqs: Sequence[Sequence[int]], batch_size: int = 32, desc: str | None = None) -> np.ndarray:
        """[N, H] float32 normalised embeddings of sequences ending in ``<emb>`` (a progress bar
        when ``desc`` is given)."""
        def batch(chunk: list) -> np.ndarray:
            return self.forward(*self.pad(chunk))[1].cpu().numpy()

        return encode_in_order(seqs, batch_size, batch, self.dim, desc, progress=desc is not None)

    def embed_queries(self, texts: Sequence[str], reasoning: bool = True, batch_size: int = 32,
                      desc: str | None = None) -> tuple[np.ndarray, list[Cot]]:
        """Query embeddings: greedy CoT then ``<emb>`` (reasoning), or ``<query><emb>``; with the CoTs."""
        if not reasoning:
            return self.embed(self.direct_queries(texts), batch_size, desc), []
        prompts = self.query_prompts(texts)
        cots = [c[0] for c in self.generate(prompts, batch_size=batch_size, desc=desc)]
        return self.embed(self.query_with_cot(prompts, [c.ids for c in cots]), batch_size, desc), cots

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def generate(self, prompts: Sequence[list[int]], sample: bool = False, num_samples: int = 1,
                 seed: int | None = None, temperature: float = 1.0, batch_size: int = 64,
                 desc: str | None = None, synced: bool = False) -> list[list[Cot]]:
        """Per prompt, ``num_samples`` CoTs (greedy: 1). Batched across prompts and samples.

        Sampling draws from a generator seeded by ``seed`` and nothing else, so the same seed
        gives the same CoTs (a resumed RL run repeats its step's samples). ``synced``: every
        worker keeps stepping until all are done (``synced_gpus``), which ZeRO-3 needs, since
        each forward gathers parameters from every worker.
        """
        if not sample and num_samples != 1:
            raise ValueError("greedy decoding gives one CoT per prompt")
        flat = [p for p in prompts for _ in range(num_samples)]
        cots: list[Cot] = []
        stops = [self.end_id] + ([self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else [])
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            for s in progress_bar(range(0, len(flat), batch_size), desc):
                ids, mask = self.pad(flat[s:s + batch_size])
                out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=self.limits.max_new_tokens,
                                          do_sample=sample, temperature=temperature if sample else None,
                                          top_p=None, top_k=None, eos_token_id=stops, pad_token_id=self.pad_id,
                                          synced_gpus=synced)
                for row in out[:, ids.shape[1]:].tolist():
                    cots.append(self._parse(row, stops))
        return [cots[i * num_samples:(i + 1) * num_samples] for i in range(len(prompts))]

    def _parse(self, row: list[int], stops: list[int]) -> Cot:
        """Cut a generated row at its first stop token and judge its format."""
        cut = next((i for i, t in enumerate(row) if t in stops), None)
        closed = cut is not None and row[cut] == self.end_id
        ids = row[:cut + 1] if closed else row[:cut] if cut is not None else row
        body = ids[:-1] if closed else ids
        text = self.tokenizer.decode(body, skip_special_tokens=False)
        valid = closed and not any(t in self.special_ids for t in body) and is_keyword_list(text)
        return Cot(ids=ids, text=text.strip(), closed=closed, valid=valid)


def save_reasoning(model: torch.nn.Module, tokenizer, folder: Path, limits: ReasoningLimits) -> None:
    """An HF folder plus the limits it was trained with."""
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / METADATA).write_text(json.dumps({"format": "lrem", **asdict(limits)}, indent=2) + "\n")


def is_reasoning_model(path: str | Path) -> bool:
    return (Path(path) / METADATA).is_file()


def load_reasoning(path: str | Path, device: str | None = None) -> ReasoningModel:
    """A folder written by ``save_reasoning`` (or any causal LM folder whose tokenizer has the three tokens)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    meta = json.loads((path / METADATA).read_text()) if (path / METADATA).is_file() else {}
    meta.pop("format", None)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = AutoModelForCausalLM.from_pretrained(path).to(dev).eval()
    return ReasoningModel(model, tok, ReasoningLimits(**meta))
