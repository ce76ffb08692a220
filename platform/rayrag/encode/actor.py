"""The Ray Data actor that turns corpus shards into embedding shards."""
from __future__ import annotations

import numpy as np

from .shards import ShardSpec, read_shard
from .store import finished_shard, write_dense_shard, write_sparse_shard


class ShardEncoder:
    """One encoder replica: loads the model once, then encodes whole shards.

    Each call gets a batch of shard descriptors (not documents): the actor reads its shard
    from the corpus file itself, tokenizes, encodes in length-sorted batches and commits the
    shard to disk. Only small metadata flows back through Ray Data.
    """

    def __init__(self, model: str, kind: str, out: str, batch_size: int, max_length: int | None,
                 threads: int, sparse_top_k: int | None):
        import torch

        torch.set_num_threads(threads)
        from pathlib import Path

        import ray

        self.out = Path(out)
        self.kind = kind
        # which node encoded which shard, in the shard's sidecar and the manifest: on a cluster
        # that is the record of where the work ran (and what a lost node had done)
        self.meta = {"node_id": ray.get_runtime_context().get_node_id()}
        self.batch_size = batch_size
        if kind == "dense":
            from ..models.reasoning_encoder import load_dense_encoder

            # an LREM reasoning embedder embeds documents directly (<text><emb>): a dense index
            self.encoder = load_dense_encoder(model, max_length=max_length, side="doc")
        else:
            from ..models.sparse import SpladeEncoder

            self.encoder = SpladeEncoder(model, max_length=max_length or 256, top_k=sparse_top_k)

    def encode_shard(self, spec: ShardSpec) -> dict:
        # A retried shard whose first attempt committed before its node or actor was lost (Ray
        # Data never got the answer) is kept, not encoded again: the sidecar is the commit point.
        done = finished_shard(self.out, spec.index, spec.count)
        if done is not None:
            return done
        docs = list(read_shard(spec))
        ids = [d for d, _ in docs]
        texts = [t for _, t in docs]
        if self.kind == "dense":
            vecs = self.encoder.encode_docs(texts, batch_size=self.batch_size, progress=False)
            return write_dense_shard(self.out, spec.index, ids, vecs, self.meta)
        mat = self.encoder.encode(texts, batch_size=self.batch_size, progress=False)
        return write_sparse_shard(self.out, spec.index, ids, mat, self.meta)

    def __call__(self, batch: dict) -> dict:
        cols = list(batch)
        infos = [self.encode_shard(ShardSpec(**{c: _py(batch[c][i]) for c in cols}))
                 for i in range(len(batch["index"]))]
        return {"shard": np.array([i["shard"] for i in infos]), "count": np.array([i["count"] for i in infos])}


def _py(v):
    return v.item() if hasattr(v, "item") else v
