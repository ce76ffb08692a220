"""KL listwise distillation from teacher scores stored in training examples.

Kullback-Leibler divergence between the teacher's and the student's softmax over each query's
candidate list, as in RocketQAv2 (Ren et al., "RocketQAv2: A Joint Training Method for Dense
Passage Retrieval and Passage Re-ranking", EMNLP 2021) and the listwise knowledge
distillation of Hofstätter et al. (2021).
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
