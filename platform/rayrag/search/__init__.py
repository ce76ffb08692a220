"""Retrievers: one interface over BM25, dense and learned-sparse search."""
from .base import Retriever, Run
from .registry import build_retriever, retriever_names

__all__ = ["Retriever", "Run", "build_retriever", "retriever_names"]
