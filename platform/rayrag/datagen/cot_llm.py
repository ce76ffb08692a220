"""The cot job's language-model teacher: keywords for a query from a local causal LM or a chat endpoint.

LREM (arXiv 2510.14321) has a teacher LLM reason about the query and extracts keywords from
its answer; here the model is asked for the keywords directly (a 135M model cannot reason at
length, and the clean-up and the rank filter in ``cot.py`` judge whatever comes back).
"""
from __future__ import annotations

PROMPT = ("Search query: {query}\n\nList up to 8 keywords, not already in the query, that a passage "
          "answering it would contain. Output only the keywords, separated by commas.")


class KeywordLLM:
    """Greedy, batched, bounded generation; or one chat completion per query from an endpoint."""

    def __init__(self, model: str | None, endpoint: str | None, endpoint_model: str | None,
                 max_new_tokens: int = 48, batch_size: int = 8):
        self.endpoint, self.endpoint_model = endpoint, endpoint_model
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        if model:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from ..assets import resolve_model

            path = resolve_model(model).path
            self.tok = AutoTokenizer.from_pretrained(path, padding_side="left")
            if self.tok.pad_token is None:
                self.tok.pad_token = self.tok.eos_token
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    def _prompt(self, query: str) -> str:
        text = PROMPT.format(query=query)
        if self.tok.chat_template:
            return self.tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                tokenize=False)
        return text + "\n"

    def keywords(self, queries: list[str]) -> list[str]:
        """Raw teacher text per query (``cot.clean_keywords`` splits it)."""
        return self._endpoint(queries) if self.endpoint else self._local(queries)

    def _local(self, queries: list[str]) -> list[str]:
        import torch

        out = []
        special = not self.tok.chat_template
        for s in range(0, len(queries), self.batch_size):
            enc = self.tok([self._prompt(q) for q in queries[s:s + self.batch_size]], return_tensors="pt",
                           padding=True, add_special_tokens=special)
            with torch.inference_mode():
                gen = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, temperature=None,
                                          top_p=None, top_k=None, pad_token_id=self.tok.pad_token_id)
            out += self.tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return out

    def _endpoint(self, queries: list[str]) -> list[str]:
        import httpx

        out = []
        with httpx.Client(timeout=60) as client:
            for q in queries:
                r = client.post(self.endpoint.rstrip("/") + "/chat/completions", json={
                    "model": self.endpoint_model, "max_tokens": self.max_new_tokens, "temperature": 0,
                    "messages": [{"role": "user", "content": PROMPT.format(query=q)}]})
                r.raise_for_status()
                out.append(r.json()["choices"][0]["message"]["content"] or "")
        return out
