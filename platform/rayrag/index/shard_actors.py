"""Shards on Ray actors: each actor loads one shard (every checksum checked, as ``load_index``
does) and searches it; the caller keeps only the ids and merges (``ShardedIndex``).

This is how an index larger than one node's memory is searched in evaluation: the actors are
scheduled across the cluster's nodes, each holding 1/N of the index. Query vectors go out as
one object in Ray's object store, shared by all actors; results come back as [Q, k] arrays.
"""
from __future__ import annotations

from pathlib import Path

import ray

from ..errors import DataError


@ray.remote
class ShardActor:
    def __init__(self, folder: str, expected_dim: int | None):
        from .store import load_index

        self.loaded = load_index(folder, expected_dim)
        if self.loaded.kind == "dense":
            import faiss

            faiss.omp_set_num_threads(1)  # the actor's share of a node is a CPU or less

    def ids(self) -> list[str]:
        return self.loaded.ids

    def search(self, queries, k: int):
        from .sharded import local_searcher

        return local_searcher(self.loaded)(queries, k)

    def set_params(self, params) -> None:
        from .faiss_index import set_search_params

        set_search_params(self.loaded.index, params)


def start_shard_actors(folder: Path, manifest: dict, expected_dim: int | None, num_cpus: float):
    """One actor per shard -> (ids per shard, searchers, tuners) for ``ShardedIndex``."""
    if not ray.is_initialized():
        raise DataError("shard_actors needs Ray: call ray.init() (or run inside a Ray job) first")
    actors = [ShardActor.options(num_cpus=num_cpus).remote(str(folder / e["dir"]), expected_dim)
              for e in manifest["shards"]]
    try:
        ids = ray.get([a.ids.remote() for a in actors])  # also waits for every load (and its errors)
    except ray.exceptions.RayActorError as e:
        raise DataError(f"{folder}: a shard actor failed to load its shard: {e}") from None
    searchers = [lambda q, k, a=a: ray.get(a.search.remote(q, k)) for a in actors]
    tuners = [lambda p, a=a: ray.get(a.set_params.remote(p)) for a in actors] if manifest["shard_kind"] == "dense" else []
    return ids, searchers, tuners
