"""Retrievers: one interface over BM25, dense and learned-sparse search."""
from .base import Retriever, Run, top_k_rows
from .registry import build_retriever, retriever_names

__all__ = ["Retriever", "Run", "top_k_rows", "build_retriever", "retriever_names"]
