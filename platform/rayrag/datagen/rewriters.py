"""The two rewriters of the rewrite job and what they share: the prompt and the clean-up.

DiSCo (Lupart et al., 2024, arXiv 2410.14609) distils from a teacher that scores with a
standalone rewrite of the conversational turn. These classes write such rewrites: a local causal
LM run by Ray Data actors (:class:`ModelRewriter`), or any OpenAI-compatible chat endpoint
(:class:`EndpointRewriter`). Both see the same prompt and go through the same :func:`clean_rewrite`.
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.conversation import format_conversation
from ..errors import RayragError

# The one instruction, recorded in MLflow with every run. {conversation} is the formatter's text
# (`|user|: ` / `|agent|: ` lines, oldest first), so the model sees what the retrievers see. The
# last question is repeated and the instruction comes last, with "do not answer it": a 135M model
# otherwise rewrites the first question, or answers the last one.
PROMPT = ("Conversation:\n{conversation}\n\nLast user question: {last}\n\n"
          "Rewrite the last user question as a standalone question using the conversation. "
          "Do not answer it. Output only the question.")

# Labels small models like to repeat before the answer ("Rewritten question: ...").
_LABEL = re.compile(r"^\s*(?:\|user\|:|(?:the\s+)?(?:standalone|rewritten|rewrite[d]?|new|final)?\s*"
                    r"(?:question|query|rewrite)\s*(?:is)?\s*:)\s*", re.I)
_QUOTES = "\"'`*“”‘’«» "


class EndpointError(RayragError):
    """The chat endpoint kept failing (or answered something that is not a chat completion)."""


class _Skipped(EndpointError):
    """A turn not sent because another turn of its shard had already failed."""


@dataclass(frozen=True)
class Rewrite:
    text: str  # the cleaned rewrite, or the last user turn when the output was empty
    raw: str  # what the rewriter generated, as is
    fallback: bool  # True when ``text`` is the last turn because nothing usable came back
    new_tokens: int  # tokens generated (-1 when an endpoint does not say)
    hit_limit: bool  # generation stopped at max_new_tokens, not at end of sequence


def clean_rewrite(raw: str) -> str:
    """First non-empty line, without labels such as "Rewritten question:" and surrounding quotes."""
    for line in raw.strip().splitlines():
        text = line.strip()
        while True:  # "Rewritten question: "..."" -> strip label, then quotes, then again
            stripped = _LABEL.sub("", text, count=1).strip(_QUOTES)
            if stripped == text:
                break
            text = stripped
        if text:
            return " ".join(text.split())
    return ""


def make_rewrite(raw: str, last_turn: str, new_tokens: int, hit_limit: bool) -> Rewrite:
    text = clean_rewrite(raw)
    return Rewrite(text or last_turn, raw, not text, new_tokens, hit_limit)


def prompt_text(messages, with_agent: bool, tokenizer=None, max_tokens: int | None = None) -> str:
    conversation = format_conversation(messages, tokenizer, max_tokens, with_agent)
    return PROMPT.format(conversation=conversation, last=" ".join(messages[-1][1].split()))


class ModelRewriter:
    """A local causal LM: batched greedy ``generate`` with left padding and bounded new tokens."""

    def __init__(self, path: str, max_new_tokens: int, max_input_tokens: int, batch_size: int, with_agent: bool):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tok = AutoTokenizer.from_pretrained(path, padding_side="left")  # left: generation continues the prompt
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.max_new_tokens, self.max_input_tokens = max_new_tokens, max_input_tokens
        self.batch_size, self.with_agent = batch_size, with_agent

    def _prompt(self, messages) -> str:
        # The conversation, not the instruction, gives way when the budget is short: oldest turns go first.
        text = prompt_text(messages, self.with_agent, self.tok, self.max_input_tokens)
        if self.tok.chat_template:
            return self.tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                tokenize=False)
        return text + " "

    def rewrite(self, items: list[tuple[str, list]]) -> list[Rewrite]:
        import torch

        prompts = [self._prompt(m) for _, m in items]
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # longest first: less padding
        out: list[Rewrite | None] = [None] * len(items)
        special = not self.tok.chat_template  # a chat template already holds its special tokens
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            enc = self.tok([prompts[i] for i in idx], return_tensors="pt", padding=True,
                           add_special_tokens=special).to(self.device)
            with torch.inference_mode():
                gen = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          temperature=None, top_p=None, top_k=None,
                                          pad_token_id=self.tok.pad_token_id)
            new = gen[:, enc["input_ids"].shape[1]:].cpu()
            for row, i in zip(new.tolist(), idx):
                ends = [k for k, t in enumerate(row) if t == self.tok.eos_token_id]
                n = ends[0] if ends else len(row)
                raw = self.tok.decode(row[:n], skip_special_tokens=True)
                out[i] = make_rewrite(raw, items[i][1][-1][1], n, not ends)
        return out


class EndpointRewriter:
    """An OpenAI-compatible ``/chat/completions`` endpoint, ``concurrency`` requests at a time.

    Server errors (5xx, 429) and connection failures are retried ``max_retries`` times with
    exponential backoff; other 4xx answers fail at once (retrying a bad request cannot help).
    """

    def __init__(self, url: str, model: str, api_key: str | None, max_new_tokens: int, timeout_s: float,
                 max_retries: int, concurrency: int, with_agent: bool):
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=headers,
                                   limits=httpx.Limits(max_connections=concurrency))
        self.url = url.rstrip("/") + "/chat/completions"
        self.model, self.max_new_tokens = model, max_new_tokens
        self.max_retries, self.concurrency, self.with_agent = max_retries, concurrency, with_agent
        self._failed = threading.Event()

    def _one(self, qid: str, messages) -> Rewrite:
        import httpx

        if self._failed.is_set():  # a turn of this shard failed: the shard is redone anyway
            raise _Skipped(qid)

        body = {"model": self.model, "temperature": 0, "max_tokens": self.max_new_tokens,
                "messages": [{"role": "user", "content": prompt_text(messages, self.with_agent)}]}
        problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
            try:
                r = self.client.post(self.url, json=body)
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}: {e}"
                continue
            if r.status_code == 429 or r.status_code >= 500:
                problem = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code != 200:
                self._failed.set()
                raise EndpointError(f"{self.url} refused turn {qid!r}: HTTP {r.status_code}: {r.text[:300]}")
            return self._parse(r, qid, messages)
        self._failed.set()
        raise EndpointError(f"{self.url} failed for turn {qid!r} after {self.max_retries + 1} tries; last: {problem}")

    def _parse(self, r, qid: str, messages) -> Rewrite:
        try:
            choice = r.json()["choices"][0]
            raw = choice["message"]["content"]
            if not isinstance(raw, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            self._failed.set()
            raise EndpointError(f"{self.url}: the answer for turn {qid!r} is not a chat completion "
                                f"({type(e).__name__}: {e}): {r.text[:200]}") from None
        tokens = ((r.json().get("usage") or {}).get("completion_tokens"))
        return make_rewrite(raw, messages[-1][1], int(tokens) if isinstance(tokens, int) else -1,
                            choice.get("finish_reason") == "length")

    def rewrite(self, items: list[tuple[str, list]]) -> list[Rewrite]:
        from concurrent.futures import ThreadPoolExecutor

        self._failed.clear()
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(self._one, qid, messages) for qid, messages in items]
            errors = [f.exception() for f in futures]
        real = [e for e in errors if e is not None and not isinstance(e, _Skipped)]
        if real:
            raise real[0]
        return [f.result() for f in futures]


class ShardRewriter:
    """The Ray Data actor: builds its rewriter once, then rewrites and commits whole shards.

    A shard row carries its turns as JSON (the inputs are small); the actor writes the shard
    through ``encode/store.py`` (Parquet, then the sidecar that commits it) and returns only
    counts. An endpoint that keeps failing is reported in the row, not raised, so Ray Data does
    not retry the whole shard on top of the client's own retries, and the driver names the turn.
    """

    def __init__(self, out: str, rewriter: dict, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.out = Path(out)
        kind = rewriter.pop("kind")
        self.rewriter = ModelRewriter(**rewriter) if kind == "model" else EndpointRewriter(**rewriter)

    def __call__(self, batch: dict) -> dict:
        from ..encode.store import write_table_shard

        shards, counts, errors = [], [], []
        for index, items_json in zip(batch["index"], batch["items"]):
            items = json.loads(str(items_json))
            try:
                rewrites = self.rewriter.rewrite(items)
            except EndpointError as e:
                shards.append(int(index)), counts.append(0), errors.append(str(e))
                continue
            write_table_shard(self.out, int(index), _table(items, rewrites))
            shards.append(int(index)), counts.append(len(items)), errors.append("")
        return {"shard": np.array(shards), "count": np.array(counts), "error": np.array(errors, dtype=object)}


def _table(items, rewrites: list[Rewrite]):
    import pyarrow as pa

    return pa.table({"id": [q for q, _ in items], "rewrite": [r.text for r in rewrites],
                     "raw": [r.raw for r in rewrites], "fallback": [r.fallback for r in rewrites],
                     "new_tokens": pa.array([r.new_tokens for r in rewrites], pa.int32()),
                     "hit_limit": [r.hit_limit for r in rewrites]})
