"""Helpers for the benchmarks: process-tree memory sampling, corpus replication, the encode benches' arguments."""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import psutil


class PeakRSS:
    """Samples the summed RSS of a process and all its descendants (Ray workers included)."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root] + root.children(recursive=True)
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def replicate_corpus(src: Path, dest: Path, times: int) -> int:
    """Write ``times`` copies of a BEIR corpus with distinct ids, streaming."""
    n = 0
    with open(dest, "w") as out:
        for rep in range(times):
            with open(src) as f:
                for line in f:
                    if not line.strip():
                        continue
                    doc = json.loads(line)
                    doc["_id"] = f"{doc['_id']}#{rep}"
                    out.write(json.dumps(doc) + "\n")
                    n += 1
    return n


def encode_arguments(doc: str, docs: int) -> argparse.ArgumentParser:
    """The encode benches' common flags: data, model, how many SciFact documents, batch and length."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--data-dir", default=os.environ.get("RAYRAG_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--docs", type=int, default=docs, help="first N SciFact documents (5183 = all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    return ap


def scifact_head(data_dir: str | Path, n: int, dest: Path) -> Path:
    """The first ``n`` SciFact documents as a corpus file of their own."""
    lines = (Path(data_dir) / "scifact" / "corpus.jsonl").read_text().splitlines()[:n]
    dest.write_text("\n".join(lines) + "\n")
    return dest
