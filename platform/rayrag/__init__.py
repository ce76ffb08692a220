"""rayrag: retrieval for RAG on Ray (train, encode, index, serve, evaluate), tracked in MLflow."""

__version__ = "0.1.0"
