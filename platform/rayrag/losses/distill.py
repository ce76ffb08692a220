"""Distillation losses from teacher scores stored in training examples.

* KL listwise: Kullback-Leibler divergence between the teacher's and the student's softmax
  over each query's candidate list (as in RocketQAv2, Ren et al. 2021, and the listwise KD of
  Hofstätter et al. 2021).
* MarginMSE: Hofstätter et al., "Improving Efficient Neural Ranking Models with Cross-
  Architecture Knowledge Distillation" (2020): MSE between student and teacher margins
  ``s(q, d+) - s(q, d-)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_listwise(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """student, teacher: [Q, C] scores over each query's C candidates -> scalar KL(teacher || student)."""
    if student.shape != teacher.shape:
        raise ValueError(f"shape mismatch: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}")
    log_p_student = F.log_softmax(student / temperature, dim=-1)  # [Q, C]
    p_teacher = F.softmax(teacher / temperature, dim=-1)  # [Q, C]
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature ** 2


def margin_mse(student_pos: torch.Tensor, student_neg: torch.Tensor, teacher_pos: torch.Tensor,
               teacher_neg: torch.Tensor) -> torch.Tensor:
    """All [N] (one positive/negative pair per row) -> scalar MSE of the score margins."""
    return F.mse_loss(student_pos - student_neg, teacher_pos - teacher_neg)
