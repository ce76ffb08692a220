"""A frozen document side read from sparse indexes instead of re-encoded at every step.

DiSCo keeps the document encoder frozen, so each candidate's SPLADE vector is a constant: the
one the pool index already holds. Reading it from there (``disco.doc_index``) turns a training
step from "encode 8 turns x 32 candidates x 256 tokens" into "encode 8 conversations", which is
what makes CPU training affordable, and the student is trained against the very vectors it will
search. The index must have been encoded by the frozen encoder itself: its manifest's
``model_version`` (sha256 of the weight files) is compared with ``cfg.model``'s before Ray starts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import DataError


@dataclass
class DocReps:
    """Candidate documents' term weights: ``matrix`` [N, V] (CSR), ``row`` doc id -> row."""
    row: dict[str, int]
    matrix: sp.csr_matrix

    def dense(self, ids: list[str]) -> torch.Tensor:
        """[len(ids), V] float32: the rows of ``ids``, in order."""
        rows = self.matrix[np.fromiter((self.row[i] for i in ids), dtype=np.int64, count=len(ids))]
        return torch.from_numpy(rows.toarray().astype(np.float32, copy=False))


def load_doc_reps(pattern: str, model: str, wanted: dict[str, set[str]]) -> DocReps:
    """The rows of ``wanted`` (domain -> doc ids) from the index folders ``pattern.format(domain=...)``,
    each checked to be a sparse index encoded by ``model``'s weights and to hold every wanted id."""
    from ..assets import resolve_model
    from ..encode.pipeline import model_fingerprint
    from ..index.store import load_index, single_index

    version = model_fingerprint(resolve_model(model).path)
    ids: list[str] = []
    parts: list[sp.csr_matrix] = []
    for domain in sorted(wanted):
        folder = pattern.format(domain=domain)
        loaded = load_index(folder)
        if loaded.kind != "sparse":
            raise DataError(f"disco.doc_index: {folder} is a {loaded.kind} index; DiSCo needs the SPLADE "
                            f"(sparse) index of the frozen document encoder")
        if loaded.manifest.get("model_version") != version:
            raise DataError(f"disco.doc_index: {folder} was encoded by {loaded.manifest.get('model')!r} "
                            f"(weights {str(loaded.manifest.get('model_version'))[:12]}), not by the frozen "
                            f"document encoder {model!r} ({version[:12]}): its vectors would not be the ones "
                            f"the student is trained against")
        at = {d: i for i, d in enumerate(loaded.ids)}
        need = sorted(wanted[domain])
        missing = [d for d in need if d not in at]
        if missing:
            raise DataError(f"disco.doc_index: {folder} lacks {len(missing)} candidate(s) of the examples, "
                            f"e.g. {missing[:3]}: it is not the index the teacher scores came from")
        docs = single_index(loaded, "disco.doc_index").postings.T.tocsr()  # [N, V]
        parts.append(docs[np.array([at[d] for d in need], dtype=np.int64)])
        ids += need
    if len(set(ids)) != len(ids):
        raise DataError("disco.doc_index: a document id occurs in two domains; ids must be unique across domains")
    matrix = sp.vstack(parts).tocsr() if parts else sp.csr_matrix((0, 0), dtype=np.float32)
    return DocReps({d: i for i, d in enumerate(ids)}, matrix)
