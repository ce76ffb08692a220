"""The encode job on a real local Ray with Ray Data: dense and sparse shards, resume after a kill."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from rayrag.encode.pipeline import EncodeConfig, run_encode
from rayrag.encode.shards import plan_shards, read_shard
from rayrag.encode.store import read_dense, read_sparse
from rayrag.errors import ConfigError, DataError

from tests.fault_checks import temp_leftovers

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, data_dir):
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    lines = (data_dir / "scifact" / "corpus.jsonl").read_text().splitlines()[:300]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_shard_plan_covers_every_document_once(small_corpus):
    plan = plan_shards(small_corpus, 64)
    assert plan.num_docs == 300 and [s.count for s in plan.shards] == [64, 64, 64, 64, 44]
    ids = [d for s in plan.shards for d, _ in read_shard(s)]
    assert len(ids) == len(set(ids)) == 300
    assert plan_shards(small_corpus, 64) == plan  # deterministic


def test_parquet_corpus_is_sharded_by_row_group(tmp_path, small_corpus):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(l) for l in small_corpus.read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet", row_group_size=50)
    plan = plan_shards(tmp_path / "c.parquet", 100)
    assert [s.count for s in plan.shards] == [100, 100, 100]
    assert [d for s in plan.shards for d, _ in read_shard(s)] == [r["_id"] for r in rows]


def test_rows_read_in_this_thread_are_every_row_of_the_dataset(ray_local):
    """ray_utils.rows_in_this_thread, which the encode and rewrite jobs read their shard actors'
    rows with (in the driver's thread, so Ctrl-C stops Ray Data's executor while Ray is up):
    every row of every block, once, across several blocks and a map."""
    from contextlib import closing

    import ray

    from rayrag.ray_utils import rows_in_this_thread

    ds = ray.data.range(10, override_num_blocks=4).map_batches(
        lambda b: {"id": b["id"], "count": b["id"] * 2}, batch_format="numpy")
    with closing(rows_in_this_thread(ds)) as rows:
        got = sorted((int(r["id"]), int(r["count"])) for r in rows)
    assert got == [(i, 2 * i) for i in range(10)]


def test_dense_encode_equals_plain_encoding(tmp_path, small_corpus, tiny_bert, ray_local):
    from rayrag.models.dense import DenseEncoder

    cfg = EncodeConfig(model=str(tiny_bert), kind="dense", corpus=str(small_corpus), output_dir=str(tmp_path / "e"),
                       docs_per_shard=64, batch_size=16, num_actors=2, max_length=128)
    m = run_encode(cfg)
    assert (m["count"], m["dim"], m["kind"], m["dtype"]) == (300, 32, "dense", "float32")
    assert len(m["shards"]) == 5 and all(len(s["sha256"]) == 64 for s in m["shards"])
    ids, vecs = read_dense(tmp_path / "e")
    plan = plan_shards(small_corpus, 64)
    texts = dict(t for s in plan.shards for t in read_shard(s))
    assert sorted(ids) == sorted(texts)
    ref = DenseEncoder(str(tiny_bert), max_length=128).encode([texts[i] for i in ids[:40]], progress=False)
    assert np.allclose(vecs[:40], ref, atol=1e-5)
    # idempotent: a second run finds the manifest and does nothing
    assert run_encode(cfg)["mlflow_run_id"] == m["mlflow_run_id"]


def test_sparse_encode(tmp_path, small_corpus, ray_local):
    # 64 tokens a passage: SPLADE's [tokens, 30k] vocabulary projection is the cost (a quarter of 256's)
    cfg = EncodeConfig(model="splade-tiny", corpus=str(small_corpus), output_dir=str(tmp_path / "s"),
                       docs_per_shard=100, batch_size=16, num_actors=1, sparse_top_k=64, max_length=64)
    m = run_encode(cfg)
    assert (m["count"], m["dim"], m["kind"]) == (300, 30522, "sparse")
    ids, mat = read_sparse(tmp_path / "s")
    assert mat.shape == (300, 30522) and len(ids) == 300
    nnz = np.diff(mat.indptr)
    assert nnz.max() <= 64 and nnz.min() > 10


@pytest.mark.parametrize("change, message", [
    ({"docs_per_shard": 32}, "different plan .*docs_per_shard"),
    ({"max_length": 64}, "different plan .*max_length"),
])
def test_output_dir_of_another_plan_is_refused(tmp_path, small_corpus, tiny_bert, change, message):
    out = tmp_path / "e"
    out.mkdir()
    base = dict(model=str(tiny_bert), kind="dense", corpus=str(small_corpus), output_dir=str(out), docs_per_shard=64)
    from rayrag.encode.pipeline import _model_info
    from rayrag.encode.store import prepare_output
    from rayrag.config import from_dict

    plan = plan_shards(small_corpus, 64)
    model = _model_info(from_dict(EncodeConfig, base))
    record = {"corpus": plan.corpus, "corpus_sha256": plan.corpus_sha256, "num_docs": plan.num_docs,
              "docs_per_shard": 64, "max_length": None, "sparse_top_k": None,
              **{k: model[k] for k in ("model", "model_version", "kind", "dim")}}
    prepare_output(out, record, overwrite=False)
    with pytest.raises(ConfigError, match=message):
        run_encode(from_dict(EncodeConfig, {**base, **change}))


@pytest.mark.parametrize("overrides, message", [
    ({"kind": "colbert"}, "kind must be dense or sparse"),
    ({"num_actors": 0}, "num_actors must be >= 1"),
    ({"dataset": None, "corpus": None}, "give dataset=<name> or corpus="),
])
def test_bad_encode_config(overrides, message):
    from rayrag.config import from_dict

    with pytest.raises(ConfigError, match=message):
        from_dict(EncodeConfig, overrides)


def test_bad_corpus_fails_before_ray(tmp_path):
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(DataError, match="must be BEIR .jsonl or .parquet"):
        run_encode(EncodeConfig(corpus=str(tmp_path / "c.txt"), output_dir=str(tmp_path / "o")))
    (tmp_path / "c.jsonl").write_text("")
    with pytest.raises(DataError, match="corpus is empty"):
        run_encode(EncodeConfig(corpus=str(tmp_path / "c.jsonl"), output_dir=str(tmp_path / "o")))


def _descendants(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_killed_encode_resumes_with_exactly_one_vector_per_document(tmp_path, data_dir):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join((data_dir / "scifact" / "corpus.jsonl").read_text().splitlines()[:300]) + "\n")
    out = tmp_path / "enc"
    args = [sys.executable, "-m", "jobs.encode", "--model", "minilm", "--output-dir", str(out), f"corpus={corpus}",
            "docs_per_shard=20", "batch_size=10", "max_length=96", "num_actors=2"]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            process_group=0)
    try:
        deadline = time.time() + 300
        while len(list((out / "shards").glob("shard-*.json"))) < 4:
            assert proc.poll() is None, "encode job ended before it could be killed"
            assert time.time() < deadline, "no shard finished in time"
            time.sleep(0.2)
        procs = _descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        for p in _descendants(proc.pid) + locals().get("procs", []):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(locals().get("procs", []), timeout=30)
    assert not (out / "manifest.json").exists()
    done_before = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("shard-*.json")}
    assert 4 <= len(done_before) < 15

    resumed = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{len(done_before)} already done" in resumed.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    ids, vecs = read_dense(out)
    source_ids = [json.loads(l)["_id"] for l in corpus.read_text().splitlines()]
    assert manifest["count"] == len(ids) == len(set(ids)) == 300 and sorted(ids) == sorted(source_ids)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-4)
    for name, mtime in done_before.items():  # finished shards were kept, not redone
        assert (out / "shards" / name).stat().st_mtime_ns == mtime
    assert not list((out / "shards").glob(".*")), "no temp files left"
    assert not temp_leftovers(out)
    # the resumed output holds the same vectors as an uninterrupted encoding: the library encoder
    # (which test_dense_encode_equals_plain_encoding shows the job matches), fed the same batches
    # (shards of 20 = two batches of 10, in shard order)
    from rayrag.models.dense import DenseEncoder

    texts = {d: t for s in plan_shards(corpus, 20).shards for d, t in read_shard(s)}
    ref = DenseEncoder("minilm", max_length=96).encode_docs([texts[i] for i in ids], batch_size=10, progress=False)
    assert np.abs(vecs - ref).max() <= 1e-5, np.abs(vecs - ref).max()


def test_splade_through_the_inverted_index_equals_exact_splade(tmp_path, small_corpus, data_dir, ray_local):
    from rayrag.data.beir import load_corpus
    from rayrag.index.build import IndexConfig, run_index
    from rayrag.search import build_retriever
    from rayrag.search.options import RetrieverOptions

    # passages cut at 64 tokens on both sides (the cost is SPLADE's [tokens, 30k] projection);
    # SciFact's claims are shorter than that, so queries encode alike whatever the limit
    run_encode(EncodeConfig(model="splade-tiny", corpus=str(small_corpus), output_dir=str(tmp_path / "s"),
                            docs_per_shard=100, batch_size=16, num_actors=2, sparse_top_k=None, max_length=64))
    run_index(IndexConfig(embeddings=str(tmp_path / "s"), output_dir=str(tmp_path / "idx")))
    corpus = load_corpus(small_corpus)
    queries = {str(i): q for i, q in enumerate(
        json.loads(l)["text"] for l in (data_dir / "scifact" / "queries.jsonl").read_text().splitlines()[:40])}
    exact = build_retriever("splade-tiny", RetrieverOptions(sparse_max_length=64))
    exact.index(corpus)
    via_index = build_retriever(f"index:{tmp_path / 'idx'}")
    via_index.index(corpus)
    a, b = exact.search(queries, 20), via_index.search(queries, 20)
    for q in queries:
        assert [d for d, _ in a[q]] == [d for d, _ in b[q]]
        assert np.allclose([s for _, s in a[q]], [s for _, s in b[q]], atol=1e-4)


def test_index_job_from_dense_encode_and_lineage(tmp_path, small_corpus, tiny_bert, ray_local):
    from rayrag.index.build import IndexConfig, run_index
    from rayrag.index.faiss_index import FaissParams
    from rayrag.index.store import load_index
    from mlflow import MlflowClient
    from rayrag import tracking

    enc = run_encode(EncodeConfig(model=str(tiny_bert), kind="dense", corpus=str(small_corpus),
                                  output_dir=str(tmp_path / "e"), docs_per_shard=100, num_actors=1))
    m = run_index(IndexConfig(embeddings=str(tmp_path / "e"), output_dir=str(tmp_path / "i"),
                              faiss=FaissParams(kind="hnsw")))
    assert m["encode_run_id"] == enc["mlflow_run_id"] and m["count"] == 300
    loaded = load_index(tmp_path / "i", expected_dim=32)
    assert loaded.index.ntotal == 300
    run = MlflowClient(tracking.tracking_uri()).get_run(m["mlflow_run_id"])
    assert run.data.tags["rayrag.encode_run_id"] == enc["mlflow_run_id"]
    assert {a.path for a in MlflowClient(tracking.tracking_uri()).list_artifacts(m["mlflow_run_id"], "index")} >= {
        "index/index.faiss", "index/ids.txt", "index/manifest.json"}
    # a damaged shard is caught before indexing
    shard = tmp_path / "e" / enc["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-20] + b"x" * 20)
    with pytest.raises(DataError, match="checksum mismatch"):
        run_index(IndexConfig(embeddings=str(tmp_path / "e"), output_dir=str(tmp_path / "i2")))
