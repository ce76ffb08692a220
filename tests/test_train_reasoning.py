"""LREM end to end on a tiny Llama: the cot job, stage 1 and GRPO on a real local Ray, export, sampling.

The model is built from a config with SmolLM2's real tokenizer; the data are real SciFact
training queries and passages.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import write_training_examples

from rayrag.config import load_config
from rayrag.errors import DataError
from rayrag.train.config import TrainConfig

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def mined(data_dir, tmp_path_factory) -> Path:
    """16 real SciFact training queries with their positives and 4 BM25-free negatives each."""
    return write_training_examples(data_dir, tmp_path_factory.mktemp("mined") / "train.jsonl", 16, 4)


@pytest.fixture(scope="module")
def cot_examples(ray_local, mined, data_dir, tmp_path_factory) -> tuple[Path, dict]:
    from rayrag.datagen.cot import CotConfig, run_cot

    out = tmp_path_factory.mktemp("cot") / "oracle.jsonl"
    cfg = load_config(CotConfig, None, [f"examples={mined}", f"data_dir={data_dir}", f"output={out}", "filter=none"])
    return out, run_cot(cfg)


def test_a_shared_fixtures_job_tracks_into_the_test_runs_store(cot_examples, shared_home):
    from mlflow import MlflowClient

    run_id = cot_examples[1]["mlflow_run_id"]  # the cot job, run by a module-scoped fixture
    run = MlflowClient(f"sqlite:///{shared_home / 'mlflow' / 'mlflow.db'}").get_run(run_id)
    assert run.data.tags["rayrag.job"] == "cot"


def test_cot_job_writes_oracle_keywords_within_the_token_limit(cot_examples, mined, data_dir):
    from rayrag.assets import load_tokenizer
    from rayrag.data.beir import load_corpus

    out, result = cot_examples
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert result["queries"] == 16 and result["kept"] == len(rows) >= 14  # filter=none: all with a keyword
    tok = load_tokenizer("smollm2-135m")  # the cot job's default tokenizer
    corpus = load_corpus(data_dir / "scifact" / "corpus.jsonl")
    for r in rows:
        assert 1 <= len(tok(r["cot"], add_special_tokens=False)["input_ids"]) <= 16
        gold = corpus[r["positives"][0]["id"]].full_text.lower()
        for kw in r["cot"].split(", "):
            assert kw in gold and kw not in r["query"].lower().split()  # from the passage, not the query
    assert json.loads(Path(str(out) + ".stats.json").read_text())["kept"] == len(rows)
    # the oracle's keywords come from the gold passage: they raise its BM25 rank wherever it is
    # not already first
    assert result["gold_rank_raised"] >= 4 and result["gold_rank_after_median"] <= result["gold_rank_before_median"]


def test_cot_job_rank_filter_keeps_only_helpful_keywords(ray_local, mined, data_dir, tmp_path):
    from rayrag.data.beir import load_corpus
    from rayrag.datagen.cot import CotConfig, run_cot
    from rayrag.search.bm25 import BM25Retriever

    cfg = load_config(CotConfig, None, [f"examples={mined}", f"data_dir={data_dir}", f"output={tmp_path / 'c.jsonl'}"])
    result = run_cot(cfg)
    rows = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert result["kept"] == len(rows) == result["gold_rank_raised"] and 0 < len(rows) < 16
    bm25 = BM25Retriever()
    bm25.index(load_corpus(data_dir / "scifact" / "corpus.jsonl"))
    for r in rows[:3]:
        gold = r["positives"][0]["id"]
        assert bm25.rank(r["query"] + " " + r["cot"].replace(",", " "), gold) < bm25.rank(r["query"], gold)


def test_cot_job_rejects_bad_input(tmp_path, mined, data_dir):
    from rayrag.cli import main
    from rayrag.datagen.cot import CotConfig, run_cot

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "positives": [{"id": "no-such-doc"}]}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl:1: needs a non-empty 'query' and 'positives'"):
        run_cot(load_config(CotConfig, None, [f"examples={bad}", f"data_dir={data_dir}", f"output={tmp_path / 'o'}"]))
    assert not (tmp_path / "o").exists()
    assert main(["cot", f"examples={mined}", "teacher=llm"]) == 2  # no model, no endpoint
    assert main(["cot", f"examples={mined}", "model=smollm2-135m"]) == 2  # a model for the oracle


def _cfg(tmp_path, model, examples, data_dir, *overrides) -> TrainConfig:
    return load_config(TrainConfig, None, [
        f"model={model}", f"examples={examples}", f"output_dir={tmp_path / 'out'}", f"data_dir={data_dir}",
        "eval.split=null", "query_max_length=16", "doc_max_length=24", "cpus_per_worker=1", "log_every=1",
        "batch_size=4", "group_size=2", *overrides])


def test_stage1_then_grpo_on_ray_train(ray_local, tmp_path, tiny_llama, cot_examples, data_dir, monkeypatch):
    from mlflow import MlflowClient

    from rayrag.models.reasoning import load_reasoning
    from rayrag.train import run_train

    examples, per_epoch = cot_examples[0], cot_examples[1]["kept"] // 4  # optimizer steps in an epoch
    sft = run_train(_cfg(tmp_path / "sft", tiny_llama, examples, data_dir, "objective=lrem-sft", "max_steps=2",
                         "lr=1e-3", "eval.split=test", "eval.max_queries=8"))
    assert 0 <= sft["eval/ndcg@10"] <= 1 and 0 <= sft["eval/format_valid"] <= 1
    rm = load_reasoning(sft["model_dir"])  # the exported folder is a reasoning embedder
    assert rm.limits.max_cot_tokens == 16
    # stage 2 starts from stage 1's folder given relative to the driver's cwd, as the shipped config does
    monkeypatch.chdir(Path(sft["model_dir"]).parents[1])
    # one step into a second epoch: each epoch ends by logging its sample CoTs, and the next must
    # still build its groups from the passages (a run once failed there, in epoch 2's first step)
    steps = per_epoch + 1
    grpo = run_train(_cfg(tmp_path / "rl", "out/model", examples, data_dir, "objective=lrem-grpo", "epochs=2",
                          f"max_steps={steps}", "lr=1e-4", "lrem.num_samples=4", "lrem.corpus_candidates=8",
                          "lrem.hard_candidates=3"))
    assert grpo["resumed_from_step"] is None  # no retry hid a failure
    history = json.loads((Path(grpo["model_dir"]).parent / "loss_history.json").read_text())
    m = history["metrics"]
    for key in ("rl/reward", "rl/reward_format", "rl/reward_length", "rl/reward_acc", "rl/format_valid",
                "rl/cot_tokens", "rl/zero_variance_groups", "rl/item_cosine", "rl/pg_loss", "rl/infonce"):
        assert len(m[key]) == steps, key
    assert all(0 <= v <= 1.7 for v in m["rl/reward"]) and all(0 <= v <= 1 for v in m["rl/format_valid"])
    # the reward's pool: 4 queries x 2 items, 8 corpus passages, 3 more mined negatives per query
    assert m["rl/candidates"] == [4 * 2 + 8 + 4 * 3] * steps
    client = MlflowClient(grpo["tracking_uri"])
    assert client.get_run(grpo["mlflow_run_id"]).data.metrics["rl/reward"] == pytest.approx(m["rl/reward"][-1])
    arts = [a.path for a in client.list_artifacts(grpo["mlflow_run_id"], "samples")]
    assert arts == ["samples/epoch0.txt", "samples/epoch1.txt"]
    # each curve's last steps against its first, in result.json and MLflow
    from rayrag.train.curves import trend

    assert grpo["trends"]["rl/reward"] == pytest.approx(trend(m["rl/reward"]))
    assert json.loads((Path(grpo["model_dir"]).parent / "result.json").read_text())["trends"] == grpo["trends"]
    assert client.get_run(grpo["mlflow_run_id"]).data.metrics["trend/rl/reward/last"] == pytest.approx(
        grpo["trends"]["rl/reward"]["last"])
    assert "plots/step_metrics.png" in [a.path for a in client.list_artifacts(grpo["mlflow_run_id"], "plots")]


def test_grpo_hard_candidates_are_the_next_mined_negatives(tmp_path, tiny_llama, cot_examples, data_dir):
    obj, _ = _objective(tmp_path, tiny_llama, cot_examples[0], data_dir, "objective=lrem-grpo",
                        "lrem.hard_candidates=3")
    data = obj.prepare_data(obj.cfg)
    text = data["text"]
    for i, ex in enumerate(data["examples"][:5]):
        g = obj.group(ex, i, 0, text)
        mined = [text[d] for d in ex.negatives[:obj.cfg.negatives_from_top]]
        assert len(g.candidates) == 3 and not set(g.candidates) & set(g.docs)
        # the best-ranked mined negatives that are not in the group, in mined order
        assert list(g.candidates) == [t for t in mined if t not in g.docs][:3]
    batch = obj.collate([obj.group(ex, i, 0, text) for i, ex in enumerate(data["examples"][:2])])
    assert batch["c_ids"].shape[0] == 6 and batch["c_ids"][:, -1].eq(obj.rm.emb_id).all()
    plain, _ = _objective(tmp_path / "plain", tiny_llama, cot_examples[0], data_dir, "objective=lrem-grpo")
    assert "c_ids" not in plain.collate([plain.group(data["examples"][0], 0, 0, text)])


def test_grpo_corpus_cache_is_refreshed_on_schedule_and_leaves_out_the_batch(tmp_path, tiny_llama, cot_examples,
                                                                            data_dir):
    obj, model = _objective(tmp_path, tiny_llama, cot_examples[0], data_dir, "objective=lrem-grpo",
                            "lrem.corpus_cache=12", "lrem.cache_refresh_steps=2")
    data = obj.prepare_data(obj.cfg)
    obj.attach(data)
    text = data["text"]
    groups = [obj.group(ex, i, 0, text) for i, ex in enumerate(data["examples"][:2])]
    batch = obj.collate(groups)
    in_batch = {obj.pool_at[t] for g in groups for t in g.docs}
    assert batch["d_pool"].tolist() == [obj.pool_at[t] for g in groups for t in g.docs]

    first = obj._cached_candidates(batch, torch.device("cpu"))
    rows = obj.cache_rows.tolist()
    assert len(rows) == 12 and len(set(rows)) == 12
    assert first.shape[0] == 12 - len(in_batch & set(rows))  # the batch's own items left out
    # the cached rows are the passages' embeddings under the weights at the refresh
    fresh = obj.rm.embed(obj.rm.items([obj.pool[i] for i in rows]))
    assert torch.allclose(obj.cache, torch.from_numpy(fresh), atol=1e-5)

    with torch.no_grad():  # weights move; within the refresh window the cache stays as it was
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    obj.micro = 1
    assert torch.equal(obj._cached_candidates(batch, torch.device("cpu")), first)
    obj.micro = 2  # the next refresh: other passages, embedded with the moved weights
    obj._cached_candidates(batch, torch.device("cpu"))
    assert obj.cache_rows.tolist() != rows
    moved = obj.rm.embed(obj.rm.items([obj.pool[i] for i in obj.cache_rows.tolist()]))
    assert torch.allclose(obj.cache, torch.from_numpy(moved), atol=1e-5)
    obj.epoch, obj.micro = 1, 0  # a new epoch refreshes too; the same key gives the same rows (resume)
    obj._cached_candidates(batch, torch.device("cpu"))
    again = obj.cache_rows.tolist()
    obj.cache_key = None
    obj._cached_candidates(batch, torch.device("cpu"))
    assert obj.cache_rows.tolist() == again


def _objective(tmp_path, model, examples, data_dir, *overrides):
    from rayrag.train.objectives import make_objective

    obj = make_objective(_cfg(tmp_path, model, examples, data_dir, *overrides))
    return obj, obj.build(str(model)).eval()


@pytest.mark.parametrize("text, ok", [
    ("nanoparticles, nanotubes, polyplexes", True),
    ("vitamin d receptor, bone mineral density", True),  # short phrases are keywords too
    ("wolfram", True),
    ("cancer is a cancer that originates from cancer cells", False),  # prose: one 8-word "item"
    ("stress markers, including ER stress markers, are involved in the stress response", False),
    ("tamoxifen, liver.", False),  # a sentence's end
    ("p<0.05, hazard ratio", True),  # a decimal point is not one
    ("cells,, tumor", False), ("", False), (" , ", False), ("cells\ntumor", False)])
def test_the_keyword_format_accepts_lists_and_refuses_prose(text, ok):
    from rayrag.models.reasoning import is_keyword_list

    assert is_keyword_list(text) is ok


@pytest.mark.parametrize("tied", [True, False])
def test_new_tokens_start_where_the_model_can_write_the_closing_one(tiny_llama, tied):
    """</think> is a copy of the line break (so its first logits are those of a token the LM
    already writes after a list); <think> and <emb> are the mean row; old rows are untouched."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from rayrag.models.reasoning import EMB, END_THINK, THINK, add_reasoning_tokens

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    model = LlamaForCausalLM.from_pretrained(tiny_llama, tie_word_embeddings=tied)
    before = model.get_input_embeddings().weight.detach().clone()
    old = before.shape[0]
    add_reasoning_tokens(tok, model)
    line = tok.encode("\n", add_special_tokens=False)
    assert len(line) == 1
    tables = [model.get_input_embeddings().weight, model.get_output_embeddings().weight]
    assert (tables[0] is tables[1]) == tied
    for w in tables:
        assert w.shape[0] == len(tok) == old + 3
        assert torch.equal(w[tok.convert_tokens_to_ids(END_THINK)], w[line[0]])
        for t in (THINK, EMB):
            torch.testing.assert_close(w[tok.convert_tokens_to_ids(t)], w[:old].mean(0))
    torch.testing.assert_close(tables[0][:old], before)
    x = torch.tensor([tok.encode("cells, tumor", add_special_tokens=False)])
    with torch.no_grad():
        logits = model(x).logits[0, -1]
    torch.testing.assert_close(logits[tok.convert_tokens_to_ids(END_THINK)], logits[line[0]])


def test_export_round_trip_gives_the_training_embeddings(tmp_path, tiny_llama, mined, data_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rayrag.models.reasoning import EMB, THINK, ReasoningModel, load_reasoning

    obj, module = _objective(tmp_path, tiny_llama, mined, data_dir, "objective=lrem-sft")
    folder = obj.export(module, tmp_path / "model")
    assert THINK in AutoTokenizer.from_pretrained(folder).get_vocab()
    assert AutoModelForCausalLM.from_pretrained(folder).get_input_embeddings().weight.shape[0] == len(obj.tokenizer)
    trained, loaded = ReasoningModel(module, obj.tokenizer, obj.rm.limits), load_reasoning(folder, device="cpu")
    queries, items = ["aspirin and stroke", "a longer claim about protein folding in yeast cells"], ["x y", "cells"]
    cots = [[obj.tokenizer.convert_tokens_to_ids("Ġcell")], []]
    for build in (lambda r: r.items(items), lambda r: r.direct_queries(queries),
                  lambda r: r.query_with_cot(r.query_prompts(queries), cots)):
        np.testing.assert_allclose(trained.embed(build(trained)), loaded.embed(build(loaded)), atol=1e-5)
    # one sequence alone or padded in a batch: the same embedding (positions count real tokens)
    seqs = loaded.items(items)
    np.testing.assert_allclose(loaded.embed(seqs[1:]), loaded.embed(seqs)[1:], atol=1e-5)
    assert all(s[-1] == loaded.tokenizer.convert_tokens_to_ids(EMB) for s in seqs)


def test_seeded_sampling_repeats_after_a_reload(tmp_path, tiny_llama, mined, data_dir):
    from rayrag.models.reasoning import load_reasoning

    obj, module = _objective(tmp_path, tiny_llama, mined, data_dir, "objective=lrem-grpo")
    prompts = obj.rm.query_prompts(["aspirin and stroke", "protein folding"])
    first = obj.rm.generate(prompts, sample=True, num_samples=3, seed=7)
    torch.manual_seed(123)  # the global RNG does not matter, only the seed
    again = obj.rm.generate(prompts, sample=True, num_samples=3, seed=7)
    reloaded = load_reasoning(obj.export(module, tmp_path / "m"), device="cpu").generate(
        prompts, sample=True, num_samples=3, seed=7)
    ids = lambda cots: [c.ids for per in cots for c in per]  # noqa: E731
    assert ids(first) == ids(again) == ids(reloaded)
    assert ids(obj.rm.generate(prompts, sample=True, num_samples=3, seed=8)) != ids(first)
    assert all(len(c.ids) <= obj.rm.limits.max_new_tokens for per in first for c in per)


def test_bad_reasoning_input_gets_a_clear_error(tmp_path, tiny_llama, mined, data_dir):
    from rayrag.models.reasoning import ReasoningModel, load_reasoning
    from rayrag.train.run import prepare_data

    with pytest.raises(DataError, match="have no 'cot'.*write them with the cot job"):
        prepare_data(_cfg(tmp_path, tiny_llama, mined, data_dir, "objective=lrem-sft"))
    long = tmp_path / "long.jsonl"
    rows = [json.loads(x) for x in mined.read_text().splitlines()]
    long.write_text("".join(json.dumps({**r, "cot": ", ".join(["protein folding kinetics"] * 8)}) + "\n" for r in rows))
    with pytest.raises(DataError, match="longer than lrem.max_cot_tokens=16"):
        prepare_data(_cfg(tmp_path, tiny_llama, long, data_dir, "objective=lrem-sft"))
    with pytest.raises(ValueError, match="no .*<think>.* token"):
        load_reasoning(tiny_llama, device="cpu")  # a plain LM's tokenizer has no reasoning tokens
    obj, module = _objective(tmp_path, tiny_llama, mined, data_dir, "objective=lrem-sft")
    with pytest.raises(ValueError, match="must end with <emb>"):
        ReasoningModel(module, obj.tokenizer).embed([obj.rm.query_prompts(["q"])[0]])
    from rayrag.cli import main

    assert main(["train-reasoning", f"examples={mined}", "objective=lrem-grpo", "lrem.num_samples=1"]) == 2
    assert main(["train-reasoning", f"examples={mined}", "objective=lrem-grpo", "lrem.hard_candidates=-1"]) == 2
    assert main(["train-reasoning", f"examples={mined}", "objective=lrem-grpo", "lrem.corpus_cache=-1"]) == 2
    assert main(["train-reasoning", f"examples={mined}", "objective=lrem-grpo", "lrem.corpus_cache=64",
                 "lrem.cache_refresh_steps=0"]) == 2
    # a checkpoint between refreshes: a resume would re-embed the cache with other weights
    assert main(["train-reasoning", f"examples={mined}", "objective=lrem-grpo", "lrem.corpus_cache=64",
                 "lrem.cache_refresh_steps=10", "checkpoint_every=15"]) == 2
    assert main(["train-dense", f"examples={mined}", "objective=lrem-sft"]) == 2  # the wrong job


def test_reasoning_retriever_modes_and_ablations(tmp_path, tiny_llama, mined, data_dir):
    from rayrag.data.beir import Document
    from rayrag.search.registry import build_retriever
    from rayrag.search.options import RetrieverOptions

    obj, module = _objective(tmp_path, tiny_llama, mined, data_dir, "objective=lrem-sft")
    folder = str(obj.export(module, tmp_path / "model"))
    corpus = {f"d{i}": Document("", f"passage {i} about cells and proteins number {i}") for i in range(12)}
    queries = {"q1": "do cells fold proteins", "q2": "aspirin"}
    runs = {}
    for mode, cot in (("off", "own"), ("on", "own"), ("on", "empty"), ("on", "random"), ("on", "query")):
        r = build_retriever(f"reasoning:{folder}", RetrieverOptions(reasoning=mode, cot=cot))
        r.index(corpus)
        runs[mode, cot] = r.search(queries, 5)
        assert all(len(v) == 5 for v in runs[mode, cot].values())
    assert runs["on", "empty"] != runs["on", "random"]  # the thought changes the embedding
    # given thoughts (a teacher's, from the CoT job's jsonl): q1 has one, q2 falls back to empty
    given = tmp_path / "given.jsonl"
    given.write_text(json.dumps({"query": queries["q1"], "cot": "protein folding, chaperones", "id": "x"}) + "\n")
    r = build_retriever(f"reasoning:{folder}", RetrieverOptions(cot=f"file:{given}"))
    r.index(corpus)
    run = r.search(queries, 5)
    assert run["q2"] == runs["on", "empty"]["q2"] and run["q1"] != runs["on", "empty"]["q1"]
    assert r.stats == {"routed_share": 1.0, "given_share": 0.5}
    rm = r.encoder.rm
    want = rm.embed(rm.query_with_cot(rm.query_prompts([queries["q1"]]), rm.cot_ids(["protein folding, chaperones"])))
    assert np.allclose(r.encode_queries([queries["q1"]]), want, atol=1e-6)
    for body, why in (("not json\n", "malformed JSON"), ("[1]\n", "expected a JSON object"),
                      (json.dumps({"query": "q"}) + "\n", "'query' and 'cot'"),
                      (json.dumps({"query": "q", "cot": "a"}) + "\n" + json.dumps({"query": "q", "cot": "b"}) + "\n",
                       "two different thoughts"), ("\n", "no thoughts")):
        given.write_text(body)
        with pytest.raises(ValueError, match=why):
            build_retriever(f"reasoning:{folder}", RetrieverOptions(cot=f"file:{given}"))
    # auto: margin 0 reasons for no query (same as off), a huge margin for every one (same as on)
    for margin, same_as, share in ((0.0, ("off", "own"), 0.0), (10.0, ("on", "own"), 1.0)):
        r = build_retriever(f"reasoning:{folder}", RetrieverOptions(reasoning="auto", reasoning_margin=margin))
        r.index(corpus)
        assert r.search(queries, 5) == runs[same_as] and r.stats["routed_share"] == share
    from rayrag.errors import ConfigError
    from rayrag.config import load_config

    with pytest.raises(ConfigError, match="options.reasoning must be on, off or auto"):
        load_config(RetrieverOptions, None, ["reasoning=maybe"])
    with pytest.raises(DataError, match="thoughts file .* not found"):
        opts = load_config(RetrieverOptions, None, [f"cot=file:{tmp_path / 'no.jsonl'}"])  # loads: read at build
        build_retriever(f"reasoning:{folder}", opts)
    with pytest.raises(ConfigError, match="file:<jsonl>"):
        RetrieverOptions(cot="file:").validate()


def test_evaluate_job_reports_the_reasoning_retrievers_own_stats(ray_local, tmp_path, tiny_llama, mined, data_dir):
    from rayrag.eval.job import EvaluateConfig, run_evaluate

    obj, module = _objective(tmp_path, tiny_llama, mined, data_dir, "objective=lrem-sft")
    folder = obj.export(module, tmp_path / "model")
    cfg = load_config(EvaluateConfig, None, [f"data_dir={data_dir}", "split=dev", f"output_dir={tmp_path / 'eval'}",
                                             f"retrievers=[lrem=reasoning:{folder}]", "options.reasoning=auto",
                                             "options.reasoning_margin=0.01"])
    result = run_evaluate(cfg)
    stats = result["retriever_stats"]["lrem"]
    assert 0 <= stats["routed_share"] <= 1 and 0 <= result["metrics"]["lrem"]["ndcg@10"] <= 1
    assert json.loads((tmp_path / "eval" / "result.json").read_text())["retriever_stats"] == result["retriever_stats"]


def test_encode_index_jobs_then_index_search_reason_as_in_memory(ray_local, tmp_path, tiny_llama, tiny_bert, mined,
                                                                  data_dir):
    """A reasoning model's corpus goes through the real encode and index jobs as a dense index
    (documents embedded without reasoning); ``index:`` search with reasoning on/off/auto ranks as
    the in-memory reasoning retriever does; and a plain embedder's index refuses off/auto."""
    from rayrag.data.beir import load_corpus
    from rayrag.encode.pipeline import EncodeConfig, run_encode
    from rayrag.errors import ConfigError
    from rayrag.index.build import IndexConfig, run_index
    from rayrag.search.options import RetrieverOptions
    from rayrag.search.registry import build_retriever
    from tests.serve_fixtures import make_corpus

    obj, module = _objective(tmp_path, tiny_llama, mined, data_dir, "objective=lrem-sft")
    folder = str(obj.export(module, tmp_path / "model"))
    corpus = make_corpus(data_dir, tmp_path, n=40)
    enc = load_config(EncodeConfig, None, [f"model={folder}", f"corpus={corpus}",
                                                  f"output_dir={tmp_path / 'enc'}", "docs_per_shard=20", "num_actors=1"])
    m = run_encode(enc)
    assert (m["kind"], m["dim"], m["count"], m.get("reasoning")) == ("dense", 32, 40, True)
    run_index(load_config(IndexConfig, None, [f"embeddings={tmp_path / 'enc'}", f"output_dir={tmp_path / 'idx'}",
                                              "faiss.kind=flat"]))
    docs = load_corpus(corpus)
    queries = {"q1": "do cells fold proteins", "q2": "aspirin and heart attacks", "q3": "vitamin D"}
    for mode, margin, cot in (("on", 0.02, "own"), ("off", 0.02, "own"), ("auto", 0.0, "own"), ("auto", 10.0, "own"),
                              ("on", 0.02, "random")):
        opts = RetrieverOptions(reasoning=mode, reasoning_margin=margin, cot=cot)
        mem = build_retriever(f"reasoning:{folder}", opts)
        mem.index(docs)
        idx = build_retriever(f"index:{tmp_path / 'idx'}", opts)
        idx.index(docs)
        a, b = mem.search(queries, 5), idx.search(queries, 5)
        for q in queries:
            assert [d for d, _ in a[q]] == [d for d, _ in b[q]], (mode, margin, q)
            assert np.allclose([s for _, s in a[q]], [s for _, s in b[q]], atol=1e-4)
        assert idx.stats["routed_share"] == mem.stats["routed_share"]
    assert idx.stats == {"routed_share": 1.0}  # a random thought: no CoT of the model's own to judge
    with pytest.raises(ConfigError, match="reasoning embedder"):
        run_encode(load_config(EncodeConfig, None, [f"model={folder}", f"corpus={corpus}", "kind=sparse",
                                                             f"output_dir={tmp_path / 'enc2'}"]))
    default = build_retriever(f"index:{tmp_path / 'idx'}", RetrieverOptions())
    default.index(docs)  # default options on a reasoning index: reasoning on
    assert default.encoder.mode == "on"
    from rayrag.models.reasoning_encoder import load_dense_encoder

    assert type(load_dense_encoder(str(tiny_bert))).__name__ == "DenseEncoder"
    with pytest.raises(ValueError, match="not a reasoning embedder"):
        load_dense_encoder(str(tiny_bert), reasoning="auto")
    with pytest.raises(ValueError, match="cot='empty' was set"):
        load_dense_encoder(str(tiny_bert), cot="empty")
