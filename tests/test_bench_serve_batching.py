"""bench/serve_batching.py runs on CPU end to end (real SciFact queries and passages, tiny random
stand-ins for the query encoder, the LLM query encoder and the reranker, batched by the
deployments' own DrainBatcher). No timing is asserted: only that every figure is there,
positive and consistent with the counts, and that the batched arm really formed batches."""
from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import load_bench

TINY = ("random-2x64", "llm-random-2x64", "reranker-random-2x64")


@pytest.fixture(scope="module")
def bench():
    return load_bench("serve_batching")


@pytest.fixture
def torch_threads():
    """The bench sets torch's thread count for the process: give the rest of the suite its own back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cpu_smoke_reports_both_arms_for_every_model(bench, data_dir, tmp_path, torch_threads):
    out = tmp_path / "batching.json"
    report = bench.main(["--device", "cpu", "--data-dir", str(data_dir), "--models", ",".join(TINY),
                         "--requests", "40", "--rerank-requests", "24", "--rerank-max-length", "64",
                         "--threads", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))  # --out holds the printed report
    assert report["device_kind"] == "cpu" and report["threads"] == 1 and report["concurrency"] == 16
    assert report["batcher"] == "rayrag.serve.batching.DrainBatcher"  # what the deployments ship

    rows = report["results"]
    assert [r["model"] for r in rows] == list(TINY)
    assert [r["kind"] for r in rows] == ["encoder", "llm", "reranker"]
    for r in rows:
        assert r["weights"].startswith("random") and (r["layers"], r["hidden"]) == (2, 64)
        assert r["params"] > 0 and r["dtype"] == "float32" and r["distinct_requests"] == 300  # SciFact test
        n = 24 if r["kind"] == "reranker" else 40
        for name in ("unbatched", "batched"):
            a = r[name]
            assert a["requests"] == n and 1 <= a["batches"] <= n
            assert a["mean_batch_size"] == pytest.approx(n / a["batches"])
            assert 1 <= a["largest_batch"] <= a["max_batch_size"]
            assert a["seconds"] > 0 and a["requests_per_s"] == pytest.approx(n / a["seconds"])
            assert 0 < a["p50_ms"] <= a["p99_ms"] and a["mean_ms"] > 0
        u, b = r["unbatched"], r["batched"]
        assert (u["max_batch_size"], u["batches"], u["mean_batch_size"], u["batch_wait_timeout_s"]) == (1, n, 1.0, 0.0)
        assert (b["max_batch_size"], b["batch_wait_timeout_s"]) == (16, 0.0)
        assert 1 < b["mean_batch_size"] <= 16  # 16 callers: batches do form
        assert r["ratio"] == pytest.approx(b["requests_per_s"] / u["requests_per_s"]) == report["ratios"][r["model"]]
        assert "peak_gpu_mem_gib" not in r  # CPU run
    encoder, llm, reranker = rows
    assert (encoder["pooling"], encoder["dim"]) == ("mean", 64)
    assert (llm["pooling"], llm["dim"]) == ("last", 64)  # the LLM embedder's last-token (EOS) pooling
    assert (reranker["pairs_per_request"], reranker["pairs_per_forward"], reranker["max_length"]) == (20, 64, 64)


@pytest.mark.parametrize("kind", ["serve", "drain"])
def test_batchers_form_batches_and_route_results(bench, kind):
    """Serve's decorator (outside a replica) and the deployments' DrainBatcher, given the same
    burst: up to max_batch_size waiting requests per batch, one batch at a time, each caller its
    own result; a failing batch fails each of its requests."""
    sizes = []

    async def handle(items):
        sizes.append(len(items))
        if "bad" in items:
            raise ValueError("bad request in batch")
        await asyncio.sleep(0.01)
        return [x * 2 for x in items]

    async def go():
        handler = bench.make_batcher(kind, 16, 0.002)(handle)
        results = await asyncio.gather(*(handler(i) for i in range(40)))
        failed = await asyncio.gather(handler("bad"), handler(1), return_exceptions=True)
        return results, failed

    with bench.serve_batch_outside_replica() if kind == "serve" else bench.contextlib.nullcontext():
        results, failed = asyncio.run(go())
    assert results == [2 * i for i in range(40)]
    assert sizes[:3] == [16, 16, 8] and sizes[3] == 2
    assert all(isinstance(f, ValueError) for f in failed)


def test_model_names_and_argument_checks(bench, data_dir):
    assert bench.parse_model("minilm") == ("encoder", "minilm")
    assert bench.parse_model("smollm2-135m") == ("llm", "smollm2-135m")
    assert bench.parse_model("reranker") == ("reranker", "reranker")
    assert bench.parse_model("llm-random-4x256") == ("llm", "random-4x256")
    assert bench.parse_model("reranker-random-2x64") == ("reranker", "random-2x64")
    with pytest.raises(SystemExit, match="unknown model"):
        bench.parse_model("bge-large")
    with pytest.raises(SystemExit, match="max-batch-size"):
        bench.main(["--device", "cpu", "--data-dir", str(data_dir), "--models", "random-2x64", "--max-batch-size", "1"])
