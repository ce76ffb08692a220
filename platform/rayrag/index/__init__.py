"""Indexes over encoded corpora: FAISS for dense vectors, an inverted index for sparse ones."""
