"""The index-delete job: mark documents of a sharded index deleted (search filters them at merge).

The shards are not rewritten: deleting is one small file and a manifest rewrite, so it is
instant and safe to run while replicas serve the previous state. Rebuilding the shards
without the deleted rows (compaction) is a fresh ``rayrag index`` run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import to_dict
from ..errors import ConfigError, DataError
from ..job import Job


@dataclass
class IndexDeleteConfig:
    index: str = ""  # a sharded index folder (index job with shards=N)
    ids: str = ""  # a text file: one document id per line
    experiment: str = "rayrag"

    def validate(self) -> None:
        if not self.index or not self.ids:
            raise ConfigError("index (a sharded index folder) and ids (a file of document ids) are required")


def run_index_delete(cfg: IndexDeleteConfig) -> dict:
    from .. import tracking
    from .shard_build import delete_docs

    path = Path(cfg.ids)
    if not path.is_file():
        raise DataError(f"ids file {path} not found")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{path} lists no document ids")
    with tracking.job_run("index-delete", to_dict(cfg), experiment=cfg.experiment) as jr:
        manifest = delete_docs(Path(cfg.index).resolve(), ids)
        jr.log_metrics({"deleted_now": len(set(ids)), "deleted_total": manifest["deleted_count"],
                        "live_documents": manifest["count"] - manifest["deleted_count"]})
        print(f"[index-delete] {len(set(ids))} documents deleted from {cfg.index} "
              f"({manifest['deleted_count']} in all)", flush=True)
        return manifest


JOB = Job(
    name="index-delete", config=IndexDeleteConfig, run=run_index_delete,
    help="delete documents from a sharded index (filtered at search time)",
    description="Mark the documents listed in ids=<file> (one id per line) deleted in the sharded index "
                "index=<folder>. Every id must be a live document; otherwise nothing changes. To update a "
                "document, delete it, then append its new version (rayrag index append=true).",
    summary=lambda cfg, m: f"{m['count'] - m['deleted_count']} live documents in {cfg.index}")
