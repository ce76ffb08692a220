import pytest

from rayrag.errors import ConfigError
from rayrag.search.fusion import rrf, weighted_sum
from rayrag.search.registry import parse_spec


def test_rrf_matches_the_formula():
    a = {"q": [("x", 9.0), ("y", 5.0)]}
    b = {"q": [("y", 0.9), ("z", 0.8)]}
    fused = dict(rrf([a, b], k=60)["q"])
    assert fused["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["x"] == pytest.approx(1 / 61) and fused["z"] == pytest.approx(1 / 62)
    assert rrf([a, b], k=60)["q"][0][0] == "y"


def test_weighted_sum_normalises_each_run():
    a = {"q": [("x", 10.0), ("y", 0.0)]}
    b = {"q": [("y", 0.5), ("x", 0.25)]}
    fused = dict(weighted_sum([a, b], [0.5, 0.5])["q"])
    assert fused == pytest.approx({"x": 0.5, "y": 0.5})
    assert dict(weighted_sum([a, b], [0.8, 0.2])["q"])["x"] == pytest.approx(0.8)


@pytest.mark.parametrize("spec, kind, models", [
    ("bm25", "bm25", []),
    ("minilm+hnsw", "dense", ["minilm"]),
    ("hybrid(bm25,minilm)", "hybrid", ["minilm"]),
    ("rrf(bm25,hybrid(minilm,splade-tiny),dense:/m)", "rrf", ["minilm", "splade-tiny", "/m"]),
    ("index:/some/folder", "index", []),
])
def test_spec_grammar(spec, kind, models):
    s = parse_spec(spec)
    assert s.kind == kind and s.models() == models


@pytest.mark.parametrize("spec, message", [
    ("colbert", "unknown retriever"),
    ("rrf(bm25)", "at least two"),
    ("rrf(bm25,minilm", "unknown retriever|unbalanced"),
    ("bm25+hnsw", "dense retrievers only"),
    ("minilm+lsh", "must be one of"),
    ("splade-tiny+hnsw", "dense retrievers only"),
])
def test_bad_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(spec)


def test_a_fused_run_keeps_the_queries_in_the_order_they_came():
    """Not a set's order, which changes with each process's string hashing (PYTHONHASHSEED)."""
    import subprocess
    import sys

    code = ("from rayrag.search.fusion import rrf, weighted_sum\n"
            "runs = [{f'q{i}': [('d', 1.0)] for i in range(50)}, {'z': [('d', 1.0)]}]\n"
            "print(list(rrf(runs)) == list(weighted_sum(runs, [0.5, 0.5])) == [f'q{i}' for i in range(50)] + ['z'])")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], env={"PYTHONHASHSEED": seed}, capture_output=True, text=True)
        assert out.stdout.strip() == "True", out.stderr[-2000:]
