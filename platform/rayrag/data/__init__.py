"""Dataset loaders: BEIR retrieval data, MTRAG conversations, and where to find them."""
from .beir import BeirDataset, Document, load_beir
from .locate import data_dir, dataset_dir

__all__ = ["BeirDataset", "Document", "load_beir", "data_dir", "dataset_dir"]
