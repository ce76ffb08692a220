import numpy as np
import pytest
import torch

from rayrag.data.beir import Document
from rayrag.errors import ConfigError
from rayrag.models.dense import pool
from rayrag.search import build_retriever
from rayrag.search.options import RetrieverOptions

CORPUS = {
    "d1": Document("Aspirin", "Aspirin reduces the risk of heart attack."),
    "d2": Document("Vitamin D", "Vitamin D deficiency is linked to bone loss."),
    "d3": Document("", "Graphene conducts electricity extremely well."),
}


def test_last_token_pooling_handles_left_and_right_padding():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]
    assert pool(hidden, right, "mean").flatten().tolist() == [0.5, 5.5]


def test_bm25_finds_the_matching_document():
    r = build_retriever("bm25")
    r.index(CORPUS)
    run = r.search({"q": "graphene electricity"}, 10)
    assert run["q"][0][0] == "d3" and len(run["q"]) == 1  # non-matching docs are not padded in


@pytest.mark.parametrize("spec", ["minilm", "splade-tiny"])
def test_builtin_retrievers_rank_the_relevant_document_first(spec):
    r = build_retriever(spec)
    r.index(CORPUS)
    run = r.search({"a": "does aspirin prevent heart attacks", "b": "bone loss and vitamin D"}, 2)
    assert run["a"][0][0] == "d1" and run["b"][0][0] == "d2"
    assert all(x[1] >= y[1] for x, y in zip(run["a"], run["a"][1:]))


def test_dense_retriever_from_a_local_folder(tiny_bert):
    r = build_retriever(f"dense:{tiny_bert}", RetrieverOptions(batch_size=2))
    r.index(CORPUS)
    emb = r._emb
    assert emb.shape == (3, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    # length-sorted batching must give the same vectors as one-by-one encoding
    single = np.stack([r.encoder.encode([CORPUS[d].full_text], progress=False)[0] for d in CORPUS])
    assert np.allclose(emb, single, atol=1e-5)


def test_splade_fast_path_equals_full_mlm_forward():
    from rayrag.models import SpladeEncoder

    enc = SpladeEncoder("splade-tiny")
    texts = [d.full_text for d in CORPUS.values()] + ["short"]
    got = enc.encode(texts, batch_size=4, progress=False).toarray()
    with torch.inference_mode():
        t = enc.tokenizer(texts, padding=True, return_tensors="pt")
        ref = (torch.log1p(torch.relu(enc.model(**t).logits)) * t["attention_mask"].unsqueeze(-1)).amax(1)
    assert np.allclose(got, ref.numpy(), atol=1e-5)
    assert (got > 0).sum(1).min() > 5


def test_unknown_retriever_and_bad_k():
    with pytest.raises(ConfigError, match="unknown retriever"):
        build_retriever("colbert")
    r = build_retriever("bm25")
    r.index(CORPUS)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        r.search({"q": "x"}, 0)
