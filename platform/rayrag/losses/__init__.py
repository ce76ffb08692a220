"""Training losses, one per module: pure functions on scores or embeddings.

Each module exposes the math as a function (tensors in, scalar loss out) that tests call
without a model, and names the paper it comes from.
"""
from ..distributed import gather_with_grad  # re-exported: it used to live in losses.infonce
from .cot_sft import cot_sft
from .disco import disco_loss
from .flops import flops
from .grpo import clip_fraction, group_advantages, grpo_loss
from .infonce import infonce
from .kl_listwise import kl_listwise
from .l1 import l1
from .lce import localized_contrastive
from .lrem_reward import lrem_reward, rank_reward
from .lrem_stage1 import lrem_stage1
from .margin_mse import margin_mse
from .yes_no import yes_no_sft

__all__ = ["infonce", "gather_with_grad", "kl_listwise", "margin_mse", "localized_contrastive", "yes_no_sft",
           "disco_loss", "flops", "l1", "cot_sft", "group_advantages", "grpo_loss", "clip_fraction",
           "lrem_reward", "rank_reward", "lrem_stage1"]
