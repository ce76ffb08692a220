"""Training objectives, one per module: pure functions on scores or embeddings.

Each module exposes the math as a function (tensors in, scalar loss out) that tests call
without a model, and names the paper it comes from.
"""
from .distill import kl_listwise, margin_mse
from .infonce import gather_with_grad, infonce
from .lce import localized_contrastive
from .yes_no import yes_no_sft

__all__ = ["infonce", "gather_with_grad", "kl_listwise", "margin_mse", "localized_contrastive", "yes_no_sft"]
