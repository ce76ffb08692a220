"""DiSCo: distillation of a rewrite's score distribution into a conversational query encoder.

Lupart, Aliannejadi & Kanoulas, "DiSCo Meets LLMs: A Unified Approach for Sparse Retrieval and
Contextual Distillation in Conversational Search" (arXiv 2410.14609). The student encodes the
whole conversation; the teacher is the same retriever scoring a standalone rewrite of the turn.
The student is trained to give each turn's candidates the teacher's *score distribution* (a KL
divergence between softmaxes over the candidates, not a match of representations), plus a small
contrastive term on the judged positives. Several rewriters (multi-teacher) are combined by
merging their distributions: here a weighted mean of the teachers' softmaxes.

Choices made here, where the paper leaves room:
  * one ``temperature`` divides teacher and student scores alike (both are the same SPLADE dot
    product, so on one scale); the KL term is multiplied by ``temperature**2`` as in Hinton et
    al.'s distillation, so its gradient does not shrink with the temperature;
  * with several positives, the contrastive term of a turn is the *mean* over its positives of
    ``-log softmax(student)[positive]`` (each positive against all the turn's candidates);
  * padded candidates (``mask`` False) get probability 0 on both sides, as with ``-inf`` scores;
  * ``student_scale`` multiplies the student's scores inside the loss only (a turn's ranking does
    not change when its scores are scaled). A student reading the whole conversation starts with
    scores about twice as spread as a rewrite's (more query terms), and a wrong, confident softmax
    is punished hardest by the KL: at scale 1 its KL is above that of a uniform distribution, and
    the quickest way down is to shrink every query weight to 0. Measured on MTRAG fold 0 with
    SPLADE-tiny: KL 4.39 against 1.31 for uniform, and the query fell from 70 terms to under 1 in
    40 steps; at 0.2 the starting KL is 1.05 and the query keeps its terms (docs/DESIGN.md).

Both terms are means over turns, hence additive over workers: with equal per-worker batches the
engine's gradient averaging gives the single-process gradient (tests/losses/test_disco_distributed.py).
"""
from __future__ import annotations

import torch


def masked_log_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[Q, C] scores, [Q, C] bool mask -> [Q, C] log-probabilities over the masked-in columns; 0 at pads
    (never -inf, so ``0 * logp`` stays 0 and no NaN reaches the gradient)."""
    logp = torch.log_softmax(scores.float().masked_fill(~mask, float("-inf")), dim=-1)  # [Q, C]
    return logp.masked_fill(~mask, 0.0)


def teacher_distribution(teacher: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None,
                         temperature: float = 1.0) -> torch.Tensor:
    """teacher: [K, Q, C] scores of K teachers -> [Q, C] merged distribution ``sum_k w_k softmax(t_k / T)``.

    ``weights`` [K] non-negative (normalised to sum 1); None weighs the teachers equally.
    """
    k = teacher.shape[0]
    w = torch.full((k,), 1.0 / k, device=teacher.device) if weights is None else weights.float()
    if w.shape != (k,) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"teacher weights must be {k} non-negative numbers, not all 0; got {w.tolist()}")
    w = w / w.sum()
    p = masked_log_softmax(teacher.float() / temperature, mask.expand_as(teacher)).exp() * mask  # [K, Q, C]
    return torch.einsum("k,kqc->qc", w.to(p.device), p)  # [Q, C]


def disco_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, positives: torch.Tensor,
               teacher_weights: torch.Tensor | None = None, temperature: float = 1.0, kl_weight: float = 0.99,
               contrastive_weight: float = 0.01, student_scale: float = 1.0) -> torch.Tensor:
    """``kl_weight * KL(teacher || student) + contrastive_weight * CE(positives)``, both means over turns.

    Args:
        student: [Q, C] student scores of each turn's candidates (values at pads are ignored).
        teacher: [K, Q, C] the K teachers' scores of the same candidates (or [Q, C] for one).
        mask: [Q, C] bool, True where a candidate exists; every row has at least one.
        positives: [Q, C] bool, the judged relevant candidates; inside ``mask``, at least one per row.
        teacher_weights: [K] merge weights (see ``teacher_distribution``); None = equal.
        student_scale: > 0, multiplies the student's scores (both terms) before the temperature.
    Returns:
        scalar loss.
    """
    if teacher.dim() == 2:
        teacher = teacher.unsqueeze(0)  # [1, Q, C]
    if student.dim() != 2 or teacher.shape[1:] != student.shape or mask.shape != student.shape \
            or positives.shape != student.shape:
        raise ValueError(f"shapes differ: student {tuple(student.shape)}, teacher {tuple(teacher.shape)}, "
                         f"mask {tuple(mask.shape)}, positives {tuple(positives.shape)}")
    mask, positives = mask.bool(), positives.bool()
    if not bool(mask.any(1).all()):
        raise ValueError("every turn needs at least one candidate (a mask row is all False)")
    if bool((positives & ~mask).any()):
        raise ValueError("a positive lies on a padded candidate")
    n_pos = positives.sum(1)  # [Q]
    if contrastive_weight and not bool((n_pos > 0).all()):
        raise ValueError("every turn needs at least one positive for the contrastive term")
    if student_scale <= 0:
        raise ValueError(f"student_scale must be > 0, got {student_scale}")
    log_q = masked_log_softmax(student * student_scale / temperature, mask)  # [Q, C]
    p = teacher_distribution(teacher, mask, teacher_weights, temperature)  # [Q, C]
    # KL(p || q) = sum_c p log p - p log q; xlogy makes 0 log 0 = 0 where a teacher gives 0.
    kl = (torch.xlogy(p, p) - p * log_q).sum(1).mean() * temperature ** 2  # [Q] -> scalar
    if not contrastive_weight:
        return kl_weight * kl
    contrastive = (-(log_q * positives).sum(1) / n_pos.clamp(min=1)).mean()  # [Q] -> scalar
    return kl_weight * kl + contrastive_weight * contrastive
