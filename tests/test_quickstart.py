"""The quickstart end to end on real SciFact: Ray Data encode -> FAISS / inverted index -> evaluate.

This is the one multi-minute test; it checks the published reference numbers and the
encode/index acceptance figures in a single run.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
def test_quickstart_reproduces_published_numbers(tmp_path, data_dir):
    out = tmp_path / "qs"
    env = dict(os.environ, RAYRAG_DATA_DIR=str(data_dir))
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "jobs.quickstart", "--output-dir", str(out), "keep_serving=false",
                           f"serve_port={port}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "evaluate" / "result.json").read_text())
    ndcg = {name: m["ndcg@10"] for name, m in result["metrics"].items()}
    # published: BM25 0.665-0.679 (Pyserini), all-MiniLM-L6-v2 0.645 (MTEB), SPLADE-tiny 0.6436
    assert 0.655 <= ndcg["bm25"] <= 0.685, ndcg
    assert abs(ndcg["minilm"] - 0.645) <= 0.005, ndcg
    assert abs(ndcg["splade-tiny"] - 0.64) <= 0.01, ndcg
    assert abs(ndcg["minilm+hnsw"] - ndcg["minilm"]) <= 0.005, ndcg
    assert ndcg["hybrid(bm25,minilm)"] > max(ndcg["bm25"], ndcg["minilm"]), ndcg
    assert "minilm+hnsw" in proc.stdout  # the printed table
    # it ends by serving the Flat index: a sample answer over HTTP and a curl line to paste
    served = proc.stdout.split("[quickstart] 5/5 serve", 1)[1]
    assert f"curl -s http://127.0.0.1:{port}/search -H 'Content-Type: application/json' -d " in served
    corpus_ids = {json.loads(line)["_id"] for line in (data_dir / "scifact" / "corpus.jsonl").open()}
    answered = [line.split("[", 1)[1].split("]", 1)[0] for line in served.splitlines() if line.startswith("  1. [")]
    assert len(answered) == 1 and answered[0] in corpus_ids, served[:2000]

    run = MlflowClient(result["tracking_uri"]).get_run(result["mlflow_run_id"])
    assert run.data.metrics["bm25/ndcg_at_10"] == pytest.approx(ndcg["bm25"])
    assert run.data.metrics["minilm/ndcg_at_10"] == pytest.approx(ndcg["minilm"])
    # lineage: the index manifest points at the encode run, which produced the embeddings
    index_manifest = json.loads((out / "index-hnsw" / "manifest.json").read_text())
    encode_manifest = json.loads((out / "encode-dense" / "manifest.json").read_text())
    assert index_manifest["encode_run_id"] == encode_manifest["mlflow_run_id"]
    assert index_manifest["model_version"] == encode_manifest["model_version"]
    assert encode_manifest["count"] == 5183
