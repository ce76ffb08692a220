"""Shards on Ray actors: each actor loads one shard (every checksum checked, as ``load_index``
does) and searches it; the caller keeps only the ids and merges (``ShardedIndex``).

This is how an index larger than one node's memory is searched in evaluation: the actors are
spread over the cluster's nodes (SPREAD scheduling), each holding 1/N of the index. Query
vectors go to each actor with its call; results come back as [Q, k] arrays.
"""
from __future__ import annotations

from pathlib import Path

import ray

from ..errors import DataError


# A shard actor that dies (node lost, OOM) is restarted by Ray, reloads its shard, and the
# search that failed is retried: searches are read-only, so a retry is safe.
@ray.remote(max_restarts=-1, max_task_retries=-1)
class ShardActor:
    def __init__(self, folder: str, expected_dim: int | None, threads: int):
        from .store import load_index

        self.loaded = load_index(folder, expected_dim, passages=False)  # the caller maps the passages
        if self.loaded.kind == "dense":
            import faiss

            faiss.omp_set_num_threads(threads)  # as many as the CPUs the actor reserved

    def describe(self) -> tuple[str, list[str]]:
        return self.loaded.kind, self.loaded.ids

    def search(self, queries, k: int):
        from .sharded import local_searcher

        return local_searcher(self.loaded)(queries, k)

    def set_params(self, params) -> None:
        from .faiss_index import set_search_params

        set_search_params(self.loaded.index, params)


def start_shard_actors(folder: Path, manifest: dict, expected_dim: int | None, num_cpus: float,
                       timeout_s: float = 600.0):
    """One actor per shard, spread over the cluster's nodes -> (kinds, ids per shard, searchers,
    tuners) for ``ShardedIndex``."""
    if not ray.is_initialized():
        raise DataError("shard actors need Ray: call ray.init() (or run inside a Ray job) first")
    actors = [ShardActor.options(num_cpus=num_cpus, scheduling_strategy="SPREAD").remote(
        str(folder / e["dir"]), expected_dim, max(1, int(num_cpus))) for e in manifest["shards"]]
    refs = [a.describe.remote() for a in actors]  # each waits for its actor's load (and its error)
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    try:
        if len(ready) < len(refs):
            raise DataError(f"{folder}: {len(refs) - len(ready)} of {len(refs)} shard actors were not loaded "
                            f"after {timeout_s:.0f}s; each needs {num_cpus} CPU(s): does the cluster have "
                            f"{len(refs) * num_cpus:g} free?")
        described = ray.get(refs)
    except (DataError, ray.exceptions.RayActorError) as e:
        for a in actors:
            ray.kill(a)
        if isinstance(e, DataError):
            raise
        raise DataError(f"{folder}: a shard actor failed to load its shard: {e}") from None
    searchers = [lambda q, k, a=a: ray.get(a.search.remote(q, k)) for a in actors]
    tuners = [lambda p, a=a: ray.get(a.set_params.remote(p)) for a in actors] if manifest["shard_kind"] == "dense" else []
    return [kind for kind, _ in described], [ids for _, ids in described], searchers, tuners
