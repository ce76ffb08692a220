"""Sharded indexes: N shards answer exactly as one index (Flat; IVF-PQ with the shared
quantizer), appends and deletions, memory-mapped passages, and shards on Ray actors.

The vectors are real: MiniLM embeddings of SciFact passages, searched with SciFact's test
queries. They are written as an encode output with the encode job's own shard writer, so the
index job reads exactly what it reads in production.
"""
from __future__ import annotations

import json


import numpy as np
import pytest

from rayrag.data.beir import load_corpus, load_queries
from rayrag.errors import ConfigError, DataError
from rayrag.index.build import IndexConfig, run_index
from rayrag.index.faiss_index import FaissParams, fill_index, search_faiss
from rayrag.index.shard_build import delete_docs, group_shards
from rayrag.index.store import check_index, load_index
from rayrag.io import sha256_file
from tests.serve_fixtures import write_encode_output

DOCS, PER_SHARD, K = 480, 40, 10


@pytest.fixture(scope="module")
def real(data_dir):
    """(ids, doc vectors, query vectors, corpus path): real MiniLM vectors of SciFact."""
    from rayrag.models.dense import DenseEncoder

    path = data_dir / "scifact" / "corpus.jsonl"
    corpus = load_corpus(path)
    ids = list(corpus)[:DOCS]
    enc = DenseEncoder("minilm", max_length=48)
    docs = enc.encode_docs([f"{corpus[i].title} {corpus[i].text}" for i in ids], batch_size=48, progress=False)
    queries = list(load_queries(data_dir / "scifact" / "queries.jsonl").values())[:300]
    return ids, docs, enc.encode_queries(queries, progress=False), path


def index(tmp_path, name, emb, dim=384, **kw):
    run_index(IndexConfig(embeddings=str(emb), output_dir=str(tmp_path / name), **kw))
    return load_index(tmp_path / name, expected_dim=dim)


def results(loaded, queries, k=K):
    scores, rows = search_faiss(loaded.index, queries, k)
    return scores, [[loaded.ids[j] if j >= 0 else None for j in r] for r in rows]


def _tie_groups(scores, ids, atol):
    """Runs of equal scores (within ``atol``), each as a sorted list of ids."""
    groups = []
    for s, d in zip(scores, ids):
        if groups and abs(s - groups[-1][0]) <= atol:
            groups[-1][1].append(d)
        else:
            groups.append((s, [d]))
    return [sorted(g) for _, g in groups]


def assert_same(a, b, atol=1e-5):
    """Same scores at every rank and the same ids, up to the order of equal scores (PQ scores
    are quantised, so ties are common) and to which tied ids make the k-th cut (arbitrary in
    FAISS too)."""
    (sa, ia), (sb, ib) = a, b
    assert np.allclose(sa, sb, atol=atol)
    for q in range(len(ia)):
        ga, gb = _tie_groups(sa[q], ia[q], atol), _tie_groups(sb[q], ib[q], atol)
        assert ga[:-1] == gb[:-1] and len(ga[-1]) == len(gb[-1]), q


def test_four_flat_shards_equal_one_flat_index(tmp_path, real):
    ids, docs, queries, corpus = real
    emb = write_encode_output(tmp_path / "enc", ids, docs, corpus)
    one = index(tmp_path, "one", emb, faiss=FaissParams(kind="flat"))
    four = index(tmp_path, "four", emb, faiss=FaissParams(kind="flat"), shards=4)
    assert [e["count"] for e in four.manifest["shards"]] == [120, 120, 120, 120]
    assert four.ids == one.ids and four.index.ntotal == DOCS
    assert_same(results(four, queries), results(one, queries))
    # and both equal exact inner products, so neither is wrong the same way
    exact = np.sort(queries @ docs.T, axis=1)[:, ::-1][:, :K]
    assert np.allclose(results(four, queries)[0], exact, atol=1e-5)
    # each shard is a complete index of its own document range
    shard0 = load_index(tmp_path / "four" / four.manifest["shards"][0]["dir"], expected_dim=384)
    assert shard0.ids == ids[:120]


def test_ivfpq_shards_equal_one_ivfpq_index_with_the_shared_quantizer(tmp_path, real):
    import faiss

    ids, docs, queries, corpus = real
    emb = write_encode_output(tmp_path / "enc", ids, docs, corpus)
    p = FaissParams(kind="ivfpq", pq_m=16, pq_bits=6, nprobe=4, rescore=0, train_size=DOCS)
    four = index(tmp_path, "four", emb, faiss=p, shards=4)
    trained = faiss.deserialize_index(np.frombuffer((tmp_path / "four" / "trained.faiss").read_bytes(), np.uint8))
    one = fill_index(trained, docs, p)  # one index, same quantizer and codebooks, all vectors
    s1, r1 = search_faiss(one, queries, K)
    assert_same(results(four, queries), (s1, [[ids[j] if j >= 0 else None for j in r] for r in r1]))
    # the quantizer a one-index build trains is that same one: the sample is drawn alike
    single = index(tmp_path, "single", emb, faiss=p)
    assert_same(results(four, queries), results(single, queries))
    # with exact re-scoring each shard re-scores its own rescore*k candidates: a superset of
    # one index's, so every rank scores at least as high, never lower
    pr = FaissParams(kind="ivfpq", pq_m=16, pq_bits=6, nprobe=4, rescore=2, train_size=DOCS)
    four_r, one_r = index(tmp_path, "four-r", emb, faiss=pr, shards=4), index(tmp_path, "one-r", emb, faiss=pr)
    sa, sb = results(four_r, queries)[0], results(one_r, queries)[0]
    assert (sa >= sb - 1e-5).all() and (sa > sb + 1e-5).any()


def test_append_adds_shards_without_touching_old_ones(tmp_path, real):
    ids, docs, queries, corpus = real
    first = write_encode_output(tmp_path / "a", ids[:320], docs[:320], corpus)
    more = write_encode_output(tmp_path / "b", ids[320:], docs[320:], corpus)
    grown = tmp_path / "grown"
    run_index(IndexConfig(embeddings=str(first), output_dir=str(grown), faiss=FaissParams(kind="flat"), shards=2))
    before = {p: sha256_file(p) for p in (grown / "shards").glob("*/*")}
    assert len(before) == 8
    run_index(IndexConfig(embeddings=str(more), output_dir=str(grown), append=True, shards=2))
    after = load_index(grown, expected_dim=384)
    assert len(after.manifest["shards"]) == 4 and after.manifest["count"] == DOCS
    assert {p: sha256_file(p) for p in before} == before  # old shards are not rewritten
    whole = index(tmp_path, "whole", write_encode_output(tmp_path / "all", ids, docs, corpus),
                  faiss=FaissParams(kind="flat"))
    assert_same(results(after, queries), results(whole, queries))
    # the same documents again: refused, and the index is left as it was
    manifest = (grown / "manifest.json").read_bytes()
    with pytest.raises(DataError, match="already in the index"):
        run_index(IndexConfig(embeddings=str(more), output_dir=str(grown), append=True))
    assert (grown / "manifest.json").read_bytes() == manifest
    with pytest.raises(ConfigError, match="needs a sharded index"):
        run_index(IndexConfig(embeddings=str(more), output_dir=str(tmp_path / "whole"), append=True))
    # vectors of another checkpoint of the same model, or shards without passages: refused
    other = json.loads((more / "manifest.json").read_text())
    (more / "manifest.json").write_text(json.dumps({**other, "model_version": "retrained"}))
    with pytest.raises(ConfigError, match="model_version"):
        run_index(IndexConfig(embeddings=str(more), output_dir=str(grown), append=True))
    (more / "manifest.json").write_text(json.dumps(other))
    with pytest.raises(ConfigError, match="passages=False"):
        run_index(IndexConfig(embeddings=str(more), output_dir=str(grown), append=True, passages=False))
    assert (grown / "manifest.json").read_bytes() == manifest


def test_deleted_documents_are_filtered_at_merge_and_can_come_back(tmp_path, real):
    ids, docs, queries, corpus = real
    emb = write_encode_output(tmp_path / "enc", ids, docs, corpus)
    idx = tmp_path / "idx"
    run_index(IndexConfig(embeddings=str(emb), output_dir=str(idx), faiss=FaissParams(kind="flat"), shards=3))
    # delete every query's current top-3, so the filter must act on the results that matter
    top = {d for row in results(load_index(idx), queries[:20], 3)[1] for d in row}
    delete_docs(idx, sorted(top))
    pruned = load_index(idx, expected_dim=384)
    keep = [i for i, d in enumerate(ids) if d not in top]
    rest = index(tmp_path, "rest", write_encode_output(tmp_path / "rest-enc", [ids[i] for i in keep], docs[keep], corpus,
                                                      per_shard=1000), faiss=FaissParams(kind="flat"))
    got = results(pruned, queries)
    assert not top & {d for row in got[1] for d in row}
    assert all(None not in row for row in got[1])  # still k results per query
    assert_same(got, results(rest, queries))
    with pytest.raises(DataError, match="not live documents"):
        delete_docs(idx, [sorted(top)[0], "no-such-doc"])
    assert load_index(idx).manifest["deleted_count"] == len(top)  # the refused call changed nothing
    # the job (`rayrag index-delete`) refuses a missing or empty ids file, and an unsharded index
    from rayrag.cli import main

    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "one.txt").write_text(ids[-1] + "\n")
    assert main(["index-delete", f"index={idx}", f"ids={tmp_path / 'none.txt'}"]) != 0
    assert main(["index-delete", f"index={idx}", f"ids={tmp_path / 'empty.txt'}"]) != 0
    assert main(["index-delete", f"index={tmp_path / 'rest'}", f"ids={tmp_path / 'one.txt'}"]) != 0
    assert load_index(idx).manifest["deleted_count"] == len(top)
    assert main(["index-delete", f"index={idx}", f"ids={tmp_path / 'one.txt'}"]) == 0
    assert load_index(idx).manifest["deleted_count"] == len(top) + 1
    top.add(ids[-1])
    # an updated document: its new version (new text, from a newer corpus) appended after the
    # old one was deleted; search finds it and the new text is served, never the old
    back = sorted(top)[:2]
    rows = [ids.index(d) for d in back]
    newer = tmp_path / "newer" / "corpus.jsonl"
    newer.parent.mkdir()
    newer.write_text("".join(json.dumps({"_id": d, "title": "updated", "text": f"new text of {d}"}) + "\n"
                             for d in back))
    run_index(IndexConfig(embeddings=str(write_encode_output(tmp_path / "back", back, docs[rows], newer)),
                          output_dir=str(idx), append=True))
    again = load_index(idx, expected_dim=384)
    found = {d for row in results(again, queries)[1] for d in row}
    assert set(back) <= found and not (top - set(back)) & found
    assert again.passages[back[0]].text == f"new text of {back[0]}"
    # one writer at a time: a delete while another job holds the index's lock is refused
    import fcntl

    with open(idx.parent / f".{idx.name}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(DataError, match="another index job is writing"):
            delete_docs(idx, [ids[-2]])


def test_passages_are_memory_mapped_and_checked(tmp_path, real):
    ids, docs, _, corpus = real
    emb = write_encode_output(tmp_path / "enc", ids, docs, corpus)
    loaded = index(tmp_path, "idx", emb, faiss=FaissParams(kind="flat"), shards=2)
    text = load_corpus(corpus)
    assert len(loaded.passages) == DOCS
    assert all(loaded.passages[d] == text[d] for d in ids[::37])
    import pyarrow as pa

    from rayrag.index.passages import PassageStore

    store = loaded.passages.stores[0]
    before = pa.total_allocated_bytes()
    again = PassageStore(store.path, store.table.column("id").to_pylist())
    assert pa.total_allocated_bytes() - before < store.path.stat().st_size / 4  # mapped, not copied
    assert again.row(3) == text[ids[3]]
    shard = tmp_path / "idx" / loaded.manifest["shards"][1]["dir"] / "passages.arrow"
    check_index(tmp_path / "idx")  # the evaluate job's pre-check: every shard file checksummed
    good = shard.read_bytes()
    shard.write_bytes(good[:-8] + b"\0" * 8)
    with pytest.raises(DataError, match="passages.arrow: checksum mismatch"):
        load_index(tmp_path / "idx")
    with pytest.raises(DataError, match="passages.arrow: checksum mismatch"):
        check_index(tmp_path / "idx")
    shard.write_bytes(good)
    # a shard swapped for another index's is caught by the top manifest's checksum of its manifest
    m = tmp_path / "idx" / loaded.manifest["shards"][0]["dir"] / "manifest.json"
    m.write_text(m.read_text().replace('"count": 240', '"count": 239'))
    with pytest.raises(DataError, match="00000/manifest.json: checksum mismatch"):
        load_index(tmp_path / "idx")
    # an unsharded index stores its passages too; passages=false leaves them out
    assert index(tmp_path, "one", emb, faiss=FaissParams(kind="flat")).passages[ids[0]] == text[ids[0]]
    assert index(tmp_path, "bare", emb, faiss=FaissParams(kind="flat"), passages=False).passages is None


def test_sparse_shards_equal_one_inverted_index(tmp_path, data_dir):
    import scipy.sparse as sp

    from rayrag.encode.store import write_sparse_shard

    corpus = data_dir / "scifact" / "corpus.jsonl"
    docs = sp.random(400, 3000, density=0.01, random_state=1, format="csr", dtype=np.float32)
    queries = sp.random(40, 3000, density=0.005, random_state=2, format="csr", dtype=np.float32)
    ids = [f"d{i}" for i in range(400)]
    emb = tmp_path / "enc"
    infos = [write_sparse_shard(emb, j, ids[s:s + 50], docs[s:s + 50]) for j, s in enumerate(range(0, 400, 50))]
    (emb / "manifest.json").write_text(json.dumps({
        "kind": "sparse", "model": "splade-tiny", "model_version": "test", "dim": 3000, "count": 400,
        "shards": infos, "corpus": str(corpus), "corpus_sha256": sha256_file(corpus)}))
    one = index(tmp_path, "one", emb, 3000, passages=False)
    three = index(tmp_path, "three", emb, 3000, passages=False, shards=3)
    (r1, s1), (r3, s3) = one.index.search(queries, 20), three.index.search(queries, 20)
    assert np.allclose(s1, s3, atol=1e-6)
    live = s1 > 0  # score 0: no shared term, not a result (as the callers filter)
    assert [list(np.asarray(one.ids)[r[m]]) for r, m in zip(r1, live)] == \
        [list(np.asarray(three.ids)[r[m]]) for r, m in zip(r3, live)]


def test_shard_groups_are_consecutive_and_balanced():
    infos = [{"shard": i, "count": 40} for i in range(12)] + [{"shard": 12, "count": 7}]
    groups = group_shards(infos, 4)
    assert [g[0]["shard"] for g in groups] == [0, 3, 6, 9]
    assert [i["shard"] for g in groups for i in g] == list(range(13))
    assert len(group_shards(infos[:3], 3)) == 3
    with pytest.raises(ConfigError, match="only 3 shards"):
        group_shards(infos[:3], 4)
    for bad in (0, True, 2.0):
        with pytest.raises(ConfigError, match="positive integer"):
            IndexConfig(shards=bad).validate()


def test_shards_on_ray_actors_answer_as_in_process(tmp_path, real, ray_local):
    from rayrag.search import build_retriever
    from rayrag.search.options import RetrieverOptions

    ids, docs, queries, corpus = real
    emb = write_encode_output(tmp_path / "enc", ids, docs, corpus)
    run_index(IndexConfig(embeddings=str(emb), output_dir=str(tmp_path / "idx"), faiss=FaissParams(kind="flat"),
                          shards=4))
    delete_docs(tmp_path / "idx", ids[:5])
    local = load_index(tmp_path / "idx", expected_dim=384)
    remote = load_index(tmp_path / "idx", expected_dim=384, shard_actor_cpus=0.25)
    assert_same(results(remote, queries), results(local, queries))
    # the evaluate job's way in: index:<folder> with options.shard_actors
    qs = {str(i): t for i, t in enumerate(list(load_queries(corpus.parent / "queries.jsonl").values())[:5])}
    on_ray = build_retriever(f"index:{tmp_path / 'idx'}", RetrieverOptions(shard_actors=True, shard_actor_cpus=0.25))
    here = build_retriever(f"index:{tmp_path / 'idx'}")
    a, b = on_ray.search(qs, K), here.search(qs, K)
    assert [[d for d, _ in a[q]] for q in qs] == [[d for d, _ in b[q]] for q in qs]
