"""Text encoders: dense (pooled hidden states) and learned sparse (SPLADE)."""
from .dense import DenseEncoder
from .sparse import SpladeEncoder

__all__ = ["DenseEncoder", "SpladeEncoder"]
