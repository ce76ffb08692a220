"""bench/encode_gpu.py runs on CPU end to end (real SciFact passages, the real MiniLM, a tiny random
BERT standing in for the base-size one) and reports what docs/SCALE.md reads from it. No timing
is asserted: only that every figure is there, positive and consistent with the counts."""
from __future__ import annotations

import json

import pytest

from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("encode_gpu")


def test_cpu_smoke_reports_every_configuration(bench, data_dir, tmp_path):
    out = tmp_path / "encode.json"
    report = bench.main(["--device", "cpu", "--data-dir", str(data_dir), "--docs", "8",
                         "--models", "minilm,random-2x64", "--max-lengths", "32,64", "--batch-sizes", "4,8",
                         "--threads", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))  # --out holds the printed report
    assert report["device_kind"] == "cpu" and report["threads"] == 2 and report["docs"] == 8

    minilm, tiny = report["models"]["minilm"], report["models"]["random-2x64"]
    assert minilm["weights"].startswith("pretrained all-MiniLM-L6-v2")
    assert (minilm["layers"], minilm["hidden"], minilm["dim"]) == (6, 384, 384)
    assert 22_000_000 < minilm["params"] < 23_500_000  # all-MiniLM-L6-v2: 22.7M
    assert tiny["weights"].startswith("random") and (tiny["layers"], tiny["hidden"], tiny["dim"]) == (2, 64, 64)

    tokens = report["tokens"]
    assert tokens["mean_tokens_untruncated"] > 64  # SciFact abstracts are longer than either cut
    for length in (32, 64):
        stats = tokens[str(length)]
        assert 0 < stats["mean_tokens"] <= length and 0 <= stats["truncated_share"] <= 1

    rows = report["results"]
    assert [(r["model"], r["dtype"], r["max_length"], r["batch_size"]) for r in rows] == [
        (m, "fp32", L, b) for m in ("minilm", "random-2x64") for L in (32, 64) for b in (4, 8)]
    for r in rows:
        assert "error" not in r, r
        assert r["seconds"] > 0 and r["forward_seconds"] > 0 and r["cpu_seconds"] > 0
        assert r["docs_per_cpu_s"] == pytest.approx(8 / r["cpu_seconds"])
        assert r["docs_per_s"] == pytest.approx(8 / r["seconds"])
        assert r["forward_docs_per_s"] == pytest.approx(8 / r["forward_seconds"])
        assert 8 <= r["tokens"] <= r["padded_tokens"] <= 8 * r["max_length"]
        assert r["tokens"] == pytest.approx(8 * tokens[str(r["max_length"])]["mean_tokens"])
        assert r["tokens_per_s"] == pytest.approx(r["tokens"] / r["seconds"])
        assert r["hours_per_billion_docs"] == pytest.approx(1e9 / r["docs_per_s"] / 3600)
        assert "peak_gpu_mem_gib" not in r  # CPU run

    best = report["best"]
    for model in ("minilm", "random-2x64"):
        for length in ("32", "64"):
            pick = best[model]["fp32"][length]
            candidates = [r for r in rows if r["model"] == model and str(r["max_length"]) == length]
            assert pick["docs_per_s"] == max(r["docs_per_s"] for r in candidates)
            assert pick["batch_size"] in (4, 8)


def test_model_shapes_and_argument_checks(bench, data_dir):
    assert bench.model_shape("base") == (12, 768, 12, 3072)  # BERT-base
    assert bench.model_shape("minilm") == (6, 384, 12, 1536)  # all-MiniLM-L6-v2's config
    assert bench.model_shape("random-4x256") == (4, 256, 4, 1024)
    for bad in ("large", "random-4x100"):
        with pytest.raises(SystemExit):
            bench.model_shape(bad)
    with pytest.raises(SystemExit, match="fp16"):
        bench.main(["--device", "cpu", "--data-dir", str(data_dir), "--docs", "2", "--dtypes", "fp16"])
    with pytest.raises(SystemExit, match="unknown dtypes"):
        bench.main(["--device", "cpu", "--data-dir", str(data_dir), "--docs", "2", "--dtypes", "int8"])


def test_random_base_model_folder_loads_through_dense_encoder(bench, tmp_path):
    """The base-size stand-in is a real model folder that DenseEncoder encodes with (shape from
    the name, the tokenizer of the built-in MiniLM); scaled down here to keep the test quick."""
    folder = bench.random_model_folder("random-2x64", bench.builtin_folder(), tmp_path)
    from rayrag.models.dense import DenseEncoder

    enc = DenseEncoder(folder, pooling="mean", max_length=32, device="cpu")
    vecs = enc.encode(["a passage about cells", "another one"], batch_size=2, progress=False)
    assert vecs.shape == (2, 64)
    assert abs(float((vecs ** 2).sum(1)[0]) - 1.0) < 1e-4
