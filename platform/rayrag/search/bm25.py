"""BM25 through bm25s (Lù, 2024), with Snowball stemming and English stop words."""
from __future__ import annotations

from typing import Mapping


from ..data.beir import Document
from .base import Retriever, Run


class BM25Retriever(Retriever):
    # k1=0.9, b=0.4 are Anserini/Pyserini's defaults, the setting behind the published BEIR
    # BM25 reference numbers; they are not tuned on any test set here.
    def __init__(self, k1: float = 0.9, b: float = 0.4, method: str = "lucene",
                 stemmer: str | None = "english", stopwords: str | None = "en", name: str = "bm25"):
        self.name = name
        self.k1, self.b, self.method = k1, b, method
        self.stemmer_lang, self.stopwords = stemmer, stopwords
        self._bm25 = None
        self._ids: list[str] = []
        self._pos: dict[str, int] | None = None

    def _stemmer(self):
        if not self.stemmer_lang:
            return None
        if getattr(self, "_stemmer_obj", None) is None:  # built once: score() runs per query when mining
            import Stemmer

            self._stemmer_obj = Stemmer.Stemmer(self.stemmer_lang)
        return self._stemmer_obj

    def index(self, corpus: Mapping[str, Document]) -> None:
        import bm25s

        self._ids = list(corpus)
        tokens = bm25s.tokenize([corpus[i].full_text for i in self._ids], stopwords=self.stopwords,
                                stemmer=self._stemmer(), show_progress=True)
        self._bm25 = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        self._bm25.index(tokens, show_progress=True)

    def _all_scores(self, query: str):
        import bm25s
        import numpy as np

        out = bm25s.tokenize([query], stopwords=self.stopwords, stemmer=self._stemmer(),
                             show_progress=False, return_ids=False)
        tokens = out[0] if out else []  # a query of stop words only has no tokens at all
        if not tokens:
            return np.zeros(len(self._ids), dtype=np.float32)
        return self._bm25.get_scores(tokens)  # [N]

    def _positions(self) -> dict[str, int]:
        self._pos = self._pos or {d: i for i, d in enumerate(self._ids)}
        return self._pos

    def score(self, query: str, doc_ids: list[str]) -> list[float]:
        scores, pos = self._all_scores(query), self._positions()
        return [float(scores[pos[d]]) for d in doc_ids]

    def rank(self, query: str, doc_id: str) -> int:
        """1-based rank of ``doc_id`` for ``query`` over the whole corpus (ties rank it first)."""
        scores = self._all_scores(query)
        return 1 + int((scores > scores[self._positions()[doc_id]]).sum())

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        import bm25s

        self._check_k(k)
        if self._bm25 is None:
            raise RuntimeError("index() must be called before search()")
        qids = list(queries)
        k = min(k, len(self._ids))
        tokens = bm25s.tokenize([queries[q] for q in qids], stopwords=self.stopwords,
                                stemmer=self._stemmer(), show_progress=False)
        docs, scores = self._bm25.retrieve(tokens, k=k, show_progress=True, n_threads=1)
        run: Run = {}
        for qi, qid in enumerate(qids):
            # bm25s pads with zero-score hits when fewer than k documents match: drop them.
            run[qid] = [(self._ids[d], float(s)) for d, s in zip(docs[qi], scores[qi]) if s > 0]
        return run
