"""The teacher-scoring job on a real slice of MTRAG govt: a tiny SPLADE, the real encode and index
jobs, real Ray and MLflow. Scores are checked against SpladeEncoder dot products recomputed here."""
import json
from pathlib import Path

import numpy as np
import pytest

from rayrag.config import from_dict
from rayrag.data.conversation import USER, format_conversation
from rayrag.data.folds import conversation_domains, conversation_folds
from rayrag.data.mtrag import load_human_tasks
from rayrag.datagen.teacher_inputs import split_conversations
from rayrag.datagen.teacher_scores import TeacherScoresConfig, run_teacher_scores
from rayrag.errors import ConfigError, DataError
from rayrag.io import sha256_file

KEYS = {"query_id", "conversation_id", "domain", "query", "docs", "positives", "teacher_scores", "teacher_queries"}
CONVERSATIONS, DISTRACTORS, MAX_LEN = 6, 60, 128  # tiny_bert has 128 positions


def _slice_dataset(src: Path, dst: Path) -> None:
    """Six govt conversations (all their turns) and a pool of their positives plus distractors;
    the other domains' tasks as published (folds are dealt over every domain's conversations)."""
    for domain in ("clapnq", "cloud", "fiqa"):
        (dst / "mtrag-human/retrieval_tasks").mkdir(parents=True, exist_ok=True)
        (dst / "mtrag-human/retrieval_tasks" / domain).symlink_to(src / "mtrag-human/retrieval_tasks" / domain)
    tasks, out = src / "mtrag-human/retrieval_tasks/govt", dst / "mtrag-human/retrieval_tasks/govt"
    (out / "qrels").mkdir(parents=True)
    real = load_human_tasks(src)
    fold = conversation_folds(conversation_domains(real), 5, 0)[0]
    govt = {t.conversation_id for t in real if t.domain == "govt"}
    half = CONVERSATIONS // 2  # both sides of fold 0 present in the slice
    keep = sorted(govt & set(fold.test))[:half] + sorted(govt & set(fold.train))[:half]
    for name in ("govt_questions.jsonl", "govt_lastturn.jsonl", "govt_rewrite.jsonl"):
        lines = [line for line in (tasks / name).open() if json.loads(line)["_id"].split("<::>")[0] in keep]
        (out / name).write_text("".join(lines))
    qrels = (tasks / "qrels/dev.tsv").read_text().splitlines()
    kept = [qrels[0]] + [line for line in qrels[1:] if line.split("\t")[0].split("<::>")[0] in keep]
    (out / "qrels/dev.tsv").write_text("\n".join(kept) + "\n")
    judged = {line.split("\t")[1] for line in kept[1:]}
    pool, others = [], 0
    for line in (src / "pool/corpus/govt.jsonl").open():
        doc_id = json.loads(line)["_id"]
        if doc_id in judged or others < DISTRACTORS:
            others += doc_id not in judged
            pool.append(line)
    (dst / "pool/corpus").mkdir(parents=True)
    (dst / "pool/corpus/govt.jsonl").write_text("".join(pool))


@pytest.fixture(scope="module")
def mtrag_slice(tmp_path_factory, data_dir, tiny_bert, ray_local):
    """(dataset folder, index template) with a govt pool index built by the real encode and index jobs."""
    from rayrag.encode.pipeline import EncodeConfig, run_encode
    from rayrag.index.build import IndexConfig, run_index

    root = tmp_path_factory.mktemp("mtrag-slice")
    _slice_dataset(data_dir / "mtrag", root / "mtrag")
    run_encode(EncodeConfig(model=str(tiny_bert), kind="sparse", dataset=None, output_dir=str(root / "enc"),
                            corpus=str(root / "mtrag/pool/corpus/govt.jsonl"), sparse_top_k=None,
                            max_length=MAX_LEN, docs_per_shard=512, batch_size=32, num_actors=1))
    run_index(IndexConfig(embeddings=str(root / "enc"), output_dir=str(root / "index-govt")))
    return root / "mtrag", str(root / "index-{domain}")


def _config(mtrag_slice, tmp_path, **over) -> TeacherScoresConfig:
    dataset, index = mtrag_slice
    base = {"dataset": str(dataset), "index": index, "domains": ["govt"], "k": 5, "max_length": MAX_LEN,
            "history_max_tokens": MAX_LEN, "output_dir": str(tmp_path / "out"), "num_cpus": 2}
    return from_dict(TeacherScoresConfig, {**base, **over})


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()]


def test_examples_format_scores_and_split(mtrag_slice, tmp_path, tiny_bert):
    from transformers import AutoTokenizer

    from rayrag.index.store import load_index
    from rayrag.models.sparse import SpladeEncoder

    dataset, index = mtrag_slice
    every = load_human_tasks(dataset)
    turns = {t.qid: t for t in every if t.domain == "govt"}
    # A second teacher, here simply the last turns, as a rewrite job's output folder.
    llm = tmp_path / "llm"
    llm.mkdir()
    (llm / "rewrite.jsonl").write_text("".join(json.dumps({"_id": q, "text": f"|user|: {t.last_turn}"}) + "\n"
                                              for q, t in turns.items()))
    digest = sha256_file(llm / "rewrite.jsonl")
    (llm / "manifest.json").write_text(json.dumps({"file": "rewrite.jsonl", "sha256": digest}))
    m = run_teacher_scores(_config(mtrag_slice, tmp_path, teachers=["human", f"llm={llm}"]))
    out = tmp_path / "out"
    train, held = _read(out / "train.jsonl"), _read(out / "eval.jsonl")

    # Split by conversation: fold 0's training part trains, its test part is eval, nothing shared.
    fold = conversation_folds(conversation_domains(every), 5, 0)[0]
    govt = {t.conversation_id for t in turns.values()}
    assert {r["conversation_id"] for r in train} == set(fold.train) & govt
    assert {r["conversation_id"] for r in held} == set(fold.test) & govt and held
    assert len(train) + len(held) == len(turns)

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    enc = SpladeEncoder(str(tiny_bert), max_length=MAX_LEN)
    loaded = load_index(index.format(domain="govt"))
    pool = {json.loads(line)["_id"]: json.loads(line)["text"] for line in (dataset / "pool/corpus/govt.jsonl").open()}
    for r in train + held:
        t = turns[r["query_id"]]
        assert set(r) == KEYS and r["domain"] == "govt" and r["conversation_id"] == t.conversation_id
        assert r["query"] == format_conversation(t.messages, tok, MAX_LEN)
        assert r["teacher_queries"] == {"human": f"|user|: {t.rewrite}", "llm": f"|user|: {t.last_turn}"}
        ids = [d["id"] for d in r["docs"]]
        assert len(ids) == len(set(ids)) and all(d["text"] == pool[d["id"]] for d in r["docs"])
        assert r["positives"] == [d for d, rel in t.qrels.items() if rel > 0 and d in pool]
        assert set(r["positives"]) <= set(ids)
        # Every teacher's exact SPLADE dot product, recomputed from fresh encodings.
        docs = enc.encode([pool[d] for d in ids], progress=False)
        for name, q in r["teacher_queries"].items():
            expect = (docs @ enc.encode([q], progress=False).T).toarray()[:, 0]
            assert np.allclose(r["teacher_scores"][name], expect, rtol=1e-4, atol=1e-5)
            assert expect.max() > 0  # not trivially equal: the candidates share terms with the query
            # ... and the teacher's own top-k from the index is among the candidates.
            assert _top(loaded, enc, q) <= set(ids)
        # so are the last turn's and the whole history's (the untrained student's own mistakes)
        assert _top(loaded, enc, r["query"]) <= set(ids) and _top(loaded, enc, f"|user|: {t.last_turn}") <= set(ids)
    assert m["teachers"] == ["human", "llm"] and m["mlflow_run_id"]
    assert m["counts"]["train"]["all"]["turns"] == len(train)
    assert json.loads((out / "manifest.json").read_text())["files"].keys() == {"train.jsonl", "eval.jsonl"}

    # Choosing the recipe: the holdout comes out of training and the test part is not written at all.
    # Candidates from the teacher alone here: its top-k and the positives, nothing else.
    m = run_teacher_scores(_config(mtrag_slice, tmp_path, holdout="recipe", output_dir=str(tmp_path / "recipe"),
                                   candidates=["teachers"]))
    for r in _read(tmp_path / "recipe/train.jsonl") + _read(tmp_path / "recipe/recipe.jsonl"):
        assert {d["id"] for d in r["docs"]} == _top(loaded, enc, r["teacher_queries"]["human"]) | set(r["positives"])
    assert m["files"].keys() == {"train.jsonl", "recipe.jsonl"}
    train, recipe = _read(tmp_path / "recipe/train.jsonl"), _read(tmp_path / "recipe/recipe.jsonl")
    convs = {r["conversation_id"] for r in train}, {r["conversation_id"] for r in recipe}
    assert not convs[0] & convs[1] and not (convs[0] | convs[1]) & set(fold.test)
    assert convs[0] | convs[1] == set(fold.train) & govt


def _top(loaded, enc, query: str, k: int = 5) -> set[str]:
    """The index's top-k ids for a query text (scores > 0: a passage sharing no term is no candidate)."""
    rows, scores = loaded.index.search(enc.encode([query], progress=False), k)
    return {loaded.ids[j] for j, s in zip(rows[0], scores[0]) if s > 0}


def test_split_by_conversation(mtrag_slice):
    turns = load_human_tasks(mtrag_slice[0])
    convs = {t.conversation_id for t in turns}
    split, spec = split_conversations(turns, "all", 5, 0, "none", 15)
    assert set(split) == convs and set(split.values()) == {"train"} and spec == {"fold": "all"}
    split, spec = split_conversations(turns, "0", 5, 0, "recipe", 15)
    fold = conversation_folds(conversation_domains(turns), 5, 0)[0]
    assert set(split) == set(fold.train)  # the test part is left out while choosing the recipe
    held = sorted(c for c, s in split.items() if s == "recipe")
    assert held == spec["recipe_conversations"] and len(held) == 15 and not set(held) & set(spec["train_conversations"])


@pytest.mark.parametrize("over, match", [
    ({"fold": "5"}, "fold must be 'all' or a fold index 0..4"),
    ({"fold": "x"}, "fold must be"),
    ({"fold": "all", "holdout": "recipe"}, "holdout=recipe needs a fold index"),
    ({"teachers": ["gpt"]}, "unknown teacher 'gpt'"),
    ({"teachers": ["human", "human"]}, "distinct names"),
    ({"teachers": ["human=x.jsonl"]}, "takes no file"),
    ({"index": "out/index-govt"}, "must contain {domain}"),
    ({"history_max_tokens": 512}, "history_max_tokens"),
    ({"candidates": ["rewrite"]}, "candidates: give distinct values"),
    ({"candidates": []}, "candidates: give distinct values"),
])
def test_bad_config_rejected(over, match, mtrag_slice, tmp_path):
    with pytest.raises(ConfigError, match=match):
        _config(mtrag_slice, tmp_path, **over).validate()


def _other_model(tmp_path, tiny_bert) -> str:
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM

    torch.manual_seed(1)
    BertForMaskedLM(AutoConfig.from_pretrained(tiny_bert)).save_pretrained(tmp_path / "other")
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(tmp_path / "other")
    return str(tmp_path / "other")


@pytest.mark.parametrize("case, match", [
    ("missing_file", "rewrite file"),
    ("missing_turns", "no rewrite for 1 of the"),
    ("model_mismatch", "is not the model the indexes were built with"),
    ("no_index", "no finished index for domain 'govt'"),
    ("wrong_pool", "not the .* of the govt pool"),
])
def test_bad_inputs_rejected_before_any_work(case, match, mtrag_slice, tmp_path, tiny_bert):
    dataset = mtrag_slice[0]
    over = {}
    if case in ("missing_file", "missing_turns"):
        path = tmp_path / "rw.jsonl"
        if case == "missing_turns":
            lines = (dataset / "mtrag-human/retrieval_tasks/govt/govt_rewrite.jsonl").read_text().splitlines()
            path.write_text("\n".join(lines[:-1]) + "\n")
        over["teachers"] = ["human", f"llm={path}"]
    elif case == "model_mismatch":
        over["model"] = _other_model(tmp_path, tiny_bert)
    elif case == "no_index":
        over["index"] = str(tmp_path / "nothing-{domain}")
    else:  # an index of another corpus: one passage short
        import shutil

        shutil.copytree(mtrag_slice[1].format(domain="govt"), tmp_path / "short-govt")
        ids = (tmp_path / "short-govt/ids.txt").read_text().splitlines()
        (tmp_path / "short-govt/ids.txt").write_text("\n".join(ids[:-1]) + "\n")
        over["index"] = str(tmp_path / "short-{domain}")
    with pytest.raises(DataError, match=match):
        run_teacher_scores(_config(mtrag_slice, tmp_path, **over))
    assert not (tmp_path / "out").exists()
