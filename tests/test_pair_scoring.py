"""One pair scorer per reranker kind: the library reranker, Serve's engine and the training
objective's evaluation score the same pairs alike (tiny models built from configs, real SciFact
text, no Ray)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from tests.serve_fixtures import make_corpus, make_reranker


@pytest.fixture(scope="module")
def rerankers(tmp_path_factory, data_dir, tiny_bert, tiny_llama):
    """Folders laid out as the train job exports them: a cross-encoder and an LLM reranker."""
    from rayrag.models.pair_scoring import LLM_PROMPT
    from rayrag.models.reranker import write_meta

    root = tmp_path_factory.mktemp("rerankers")
    cross = make_reranker(tiny_bert, root / "cross", make_corpus(data_dir, root))
    write_meta(cross, "cross", 48)
    llm = root / "llm"
    shutil.copytree(tiny_llama, llm)
    write_meta(llm, "llm", 96, prompt=LLM_PROMPT)
    return {"cross": (cross, "lce", 48), "llm": (llm, "llm_yesno", 96)}


def _objective(folder, objective, max_length, tmp_path, *overrides):
    from rayrag.config import load_config
    from rayrag.train.config import TrainConfig
    from rayrag.train.objectives import make_objective

    cfg = load_config(TrainConfig, None, [f"model={folder}", f"objective={objective}", "examples=unused.jsonl",
                                          f"output_dir={tmp_path}", f"inference_max_length={max_length}", *overrides])
    obj = make_objective(cfg)
    return obj, obj.build(str(folder)).eval()


@pytest.mark.parametrize("kind", ["cross", "llm"])
def test_library_serve_and_training_evaluation_give_the_same_scores(kind, rerankers, scifact_test, tmp_path):
    from rayrag.config import from_dict
    from rayrag.models.reranker import load_reranker
    from rayrag.serve.config import ServeConfig
    from rayrag.serve.engine import RerankEngine

    folder, objective, max_length = rerankers[kind]
    qids = sorted(scifact_test.queries)[:2]
    doc_ids = sorted(scifact_test.corpus)[:6]  # abstracts of many lengths, most cut at max_length
    queries = [scifact_test.queries[q] for q in qids for _ in doc_ids]
    docs = [scifact_test.corpus[d].full_text for _ in qids for d in doc_ids]

    library = load_reranker(str(folder))
    engine = RerankEngine(from_dict(ServeConfig, {"reranker": str(folder)}))
    obj, module = _objective(folder, objective, max_length, tmp_path)
    training_eval = obj.pair_scorer(module, torch.device("cpu"))
    assert library.kind == kind and library.max_length == engine.reranker.max_length == max_length

    # one query's documents: every path scores them in one batch, so the scores are identical
    n = len(doc_ids)
    one = library.score(queries[0], docs[:n])
    np.testing.assert_array_equal(engine.score_pairs(queries[:n], docs[:n]), one)
    np.testing.assert_array_equal(training_eval(queries[:n], docs[:n]), one)
    # pairs of two queries in one call (as Serve batches requests) score as each query alone,
    # up to float rounding from the different padding of a mixed batch
    per_query = np.concatenate([library.score(queries[i], docs[i:i + n]) for i in range(0, len(docs), n)])
    for mixed in (engine.score_pairs(queries, docs), library.score_pairs(queries, docs), training_eval(queries, docs)):
        np.testing.assert_allclose(mixed, per_query, rtol=0, atol=1e-6)
    assert len(set(np.round(per_query, 6))) > 1  # the pairs are told apart: not a constant head


@pytest.mark.parametrize("kind", ["cross", "llm"])
def test_training_evaluation_ranks_with_the_shared_scorer(kind, rerankers, scifact_test, tmp_path):
    """The objective's end-of-epoch evaluation equals re-ranking with the loaded reranker."""
    from rayrag.models.reranker import load_reranker
    from rayrag.search.registry import build_retriever
    from rayrag.search.rerank import rerank_run
    from rayrag.train.objectives.evaluation import eval_split, score_run

    folder, objective, max_length = rerankers[kind]
    obj, module = _objective(folder, objective, max_length, tmp_path, "eval.split=test", "eval.max_queries=3",
                             "eval.rerank_depth=5", "eval.first_stage=bm25")
    obj.eval_data = scifact_test
    got = obj.evaluate(module, torch.device("cpu"))
    ds = eval_split(obj.cfg, scifact_test)
    bm25 = build_retriever("bm25")  # as the objective's evaluation builds its first stage
    bm25.index(ds.corpus)
    first = bm25.search(ds.queries, 5)
    expected = score_run(obj.cfg, ds, rerank_run(first, ds.queries, ds.corpus, load_reranker(str(folder)).score, 5))
    assert got == expected
