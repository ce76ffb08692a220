"""MarginMSE distillation from teacher scores stored in training examples.

Hofstätter, Althammer, Schröder, Sertkan & Hanbury, "Improving Efficient Neural Ranking Models
with Cross-Architecture Knowledge Distillation" (2020): the mean squared error between the
student's and the teacher's margins ``s(q, d+) - s(q, d-)``. Matching margins rather than raw
scores lets a student whose scores live on another scale (a bi-encoder's cosine against a
cross-encoder's logit) learn from the teacher.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def margin_mse(student_pos: torch.Tensor, student_neg: torch.Tensor, teacher_pos: torch.Tensor,
               teacher_neg: torch.Tensor) -> torch.Tensor:
    """All [N] (one positive/negative pair per row) -> scalar MSE of the score margins."""
    return F.mse_loss(student_pos - student_neg, teacher_pos - teacher_neg)
