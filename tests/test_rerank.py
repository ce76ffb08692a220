"""``search/rerank.py``'s interpolation weight: one range rule, [0, 1], for the evaluate job's
config, Serve's request check and ``interpolate`` itself (Serve's check runs without Serve)."""
from __future__ import annotations

import pytest

from rayrag.config import load_config
from rayrag.errors import ConfigError
from rayrag.eval.job import EvaluateConfig
from rayrag.search.rerank import check_interpolation_weight, interpolate
from rayrag.serve.app import interpolation_weight
from rayrag.serve.errors import ApiError
from rayrag.serve.schemas import SearchRequest


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0])
def test_weights_in_0_1_are_accepted_by_evaluate_and_serve(w):
    assert check_interpolation_weight(w) == w
    assert load_config(EvaluateConfig, None, ["rerank=minilm", f"rerank_interpolate=[{w}]"]).rerank_interpolate == [w]
    assert interpolation_weight(SearchRequest(query="q", rerank=True, rerank_interpolate=w)) == w


@pytest.mark.parametrize("w", [-0.1, 1.1])
def test_weights_outside_0_1_are_refused_by_evaluate_and_serve(w):
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        check_interpolation_weight(w)
    with pytest.raises(ConfigError, match=r"rerank_interpolate: .*must be in \[0, 1\]"):
        load_config(EvaluateConfig, None, ["rerank=minilm", f"rerank_interpolate=[0.5, {w}]"])
    with pytest.raises(ApiError, match=r"must be in \[0, 1\]") as e:
        interpolation_weight(SearchRequest(query="q", rerank=True, rerank_interpolate=w))
    assert (e.value.status, e.value.param, e.value.code) == (400, "rerank_interpolate", "out_of_range")
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        interpolate({"q": [("a", 1.0)]}, {"q": [("a", 1.0)]}, depth=1, weight=w)


def test_serve_needs_rerank_for_a_weight_and_nan_is_refused():
    assert interpolation_weight(SearchRequest(query="q", rerank=True)) is None
    with pytest.raises(ApiError, match="needs rerank: true"):
        interpolation_weight(SearchRequest(query="q", rerank_interpolate=0.5))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        check_interpolation_weight(float("nan"))


def test_the_ends_of_the_range_are_each_stage_alone():
    first = {"q": [("a", 9.0), ("b", 5.0), ("c", 1.0), ("tail", 0.5)]}
    reranked = {"q": [("c", 3.0), ("a", 2.0), ("b", -1.0), ("tail", -2.0)]}
    assert [d for d, _ in interpolate(first, reranked, depth=3, weight=0.0)["q"]] == ["a", "b", "c", "tail"]
    assert [d for d, _ in interpolate(first, reranked, depth=3, weight=1.0)["q"]] == ["c", "a", "b", "tail"]
