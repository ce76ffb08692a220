"""DiSCo on the shared training runtime: the examples reader, the frozen document side, the
regulariser schedule, the export round trip, and a 2-worker ZeRO-2 run on a real local Ray that
equals plain PyTorch. Tiny masked LMs built from configs; synthetic, well-formed examples."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rayrag.config import load_config
from rayrag.errors import DataError
from rayrag.train.config import TrainConfig

from .conftest import save_tiny_bert
from .disco_fixtures import turn, write_examples

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory) -> Path:
    """A 1-layer BertForMaskedLM without dropout (a W-worker run and one process then compute the same)."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-mlm"), "BertForMaskedLM", 1, no_dropout=True)


@pytest.fixture(scope="module")
def disco_files(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("disco")
    train = write_examples(root / "train.jsonl", range(0, 6))  # 18 turns
    held = write_examples(root / "eval.jsonl", range(5, 8), seed=1)  # conv5 overlaps: its 3 turns are dropped
    return train, held


def _cfg(tmp_path, model, examples, *overrides) -> TrainConfig:
    return load_config(TrainConfig, None, [
        "objective=disco", "holdout=null", f"model={model}", f"examples={examples}", f"output_dir={tmp_path / 'out'}",
        "query_max_length=32", "doc_max_length=24", "cpus_per_worker=1", "log_every=1", "disco.teachers=[human,llm]",
        *overrides])


def test_reader_rejects_bad_lines_naming_file_and_line(tmp_path):
    from rayrag.train.disco_examples import load_disco_examples

    rng = np.random.default_rng(0)
    good = turn(0, 1, 4, rng)

    def bad(**change) -> Path:
        obj = {**good, "query_id": "conv0::9", **change}
        p = tmp_path / f"bad-{len(list(tmp_path.iterdir()))}" / "bad.jsonl"
        p.parent.mkdir()
        p.write_text(json.dumps(good) + "\n" + json.dumps(obj) + "\n")
        return p

    cases = [
        (bad(teacher_scores={"llm": good["teacher_scores"]["llm"]}), r"bad.jsonl:2: no scores of teacher 'human'"),
        (bad(teacher_scores={}), r"bad.jsonl:2: no 'teacher_scores'"),
        (bad(teacher_scores={**good["teacher_scores"], "human": [1.0, 2.0]}),
         r"bad.jsonl:2: teacher 'human' has 2 scores for 4 docs"),
        (bad(teacher_scores={**good["teacher_scores"], "human": [1.0, 2.0, float("nan"), 0.0]}),
         r"bad.jsonl:2: teacher 'human' scores must be finite"),
        (bad(positives=[]), r"bad.jsonl:2: no positives"),
        (bad(positives=["elsewhere"]), r"bad.jsonl:2: positives \['elsewhere'\] are not among 'docs'"),
        (bad(docs=good["docs"] + good["docs"][:1]), r"bad.jsonl:2: duplicate document ids"),
        (bad(docs=[{"id": "c0-d0", "text": "changed"}] + good["docs"][1:]), r"bad.jsonl:2: document 'c0-d0' has another text"),
        (bad(query=""), r"bad.jsonl:2: 'query' must be a non-empty string"),
        (bad(query_id=good["query_id"]), r"bad.jsonl:2: query_id 'conv0::2' already on line 1"),
    ]
    for path, message in cases:
        with pytest.raises(DataError, match=message):
            load_disco_examples(path, ["human", "llm"])
    # a teacher named in the config that the file does not have
    p = tmp_path / "one.jsonl"
    p.write_text(json.dumps(good) + "\n")
    with pytest.raises(DataError, match=r"one.jsonl:1: no scores of teacher 'gpt' \(it has \['human', 'llm'\]\)"):
        load_disco_examples(p, ["human", "gpt"])
    # a query that is not the formatter's output, when it must be fitted to a length
    p.write_text(json.dumps({**good, "query": "no speaker prefix"}) + "\n")
    with pytest.raises(DataError, match=r"one.jsonl:1: 'query' is not a formatted conversation"):
        load_disco_examples(p, ["human"], fit_query=lambda q: q if q.startswith("|") else (_ for _ in ()).throw(
            ValueError("line 1 does not start with '|user|: '")))
    with pytest.raises(DataError, match="DiSCo examples not found"):
        load_disco_examples(tmp_path / "missing.jsonl", ["human"])


def test_max_candidates_keeps_positives_then_the_teachers_favourites(tmp_path):
    from rayrag.train.disco_examples import load_disco_examples

    obj = {**turn(0, 0, 5, np.random.default_rng(0)), "positives": ["c0-d4"],
           "teacher_scores": {"human": [0.0, 5.0, 1.0, 4.0, -9.0]}}
    p = tmp_path / "ex.jsonl"
    p.write_text(json.dumps(obj) + "\n")
    (ex,), text = load_disco_examples(p, ["human"], max_candidates=3)
    assert ex.doc_ids == ("c0-d1", "c0-d3", "c0-d4")  # file order kept
    assert ex.positives == (False, False, True) and ex.teacher == ((5.0, 4.0, -9.0),)


def test_long_conversations_lose_their_oldest_turns_not_the_current_one(tmp_path, tiny_mlm):
    from transformers import AutoTokenizer

    from rayrag.train.disco_examples import fit_conversation

    tok = AutoTokenizer.from_pretrained(tiny_mlm)
    text = "\n".join(f"|user|: question number {i} about solar panels" for i in range(10))
    fitted = fit_conversation(text, tok, 32)
    assert fitted.endswith("|user|: question number 9 about solar panels") and text.endswith(fitted)
    assert len(tok(fitted)["input_ids"]) <= 32 < len(tok(text)["input_ids"])
    assert fit_conversation("|user|: short", tok, 32) == "|user|: short"


def test_regulariser_grows_quadratically(tmp_path):
    from rayrag.train.objectives.sparse import reg_weight

    cfg = load_config(TrainConfig, None, ["objective=disco", "disco.reg_weight=0.4", "disco.reg_warmup_steps=10"])
    assert [reg_weight(cfg, s) for s in (0, 5, 10, 20)] == pytest.approx([0.0, 0.1, 0.4, 0.4])
    cfg = load_config(TrainConfig, None, ["objective=disco", "disco.reg_weight=0.4"])
    assert reg_weight(cfg, 0) == 0.4


def test_the_objective_scales_the_students_scores_in_the_loss_only():
    """``disco.student_scale`` reaches the loss: the objective's loss at 0.2 is the DiSCo loss of 0.2 x
    the scores (and the regulariser of the unscaled representations)."""
    import torch

    from rayrag.losses import disco_loss, flops
    from rayrag.train.objectives.sparse import _disco

    torch.manual_seed(0)
    scores, q = torch.randn(2, 3) * 10, torch.rand(2, 7)
    batch = {"teacher": torch.randn(1, 2, 3), "mask": torch.ones(2, 3, dtype=torch.bool),
             "positives": torch.tensor([[True, False, False], [False, False, True]])}
    cfg = load_config(TrainConfig, None, ["objective=disco", "disco.student_scale=0.2", "disco.reg_weight=0.3"])
    want = disco_loss(scores * 0.2, batch["teacher"], batch["mask"], batch["positives"]) + 0.3 * flops(q)
    assert _disco(scores, q, batch, cfg, 5).item() == pytest.approx(want.item(), rel=1e-6)
    plain = load_config(TrainConfig, None, ["objective=disco", "disco.reg_weight=0.3"])
    assert _disco(scores, q, batch, plain, 5).item() != pytest.approx(want.item(), rel=1e-3)


def test_config_rejections():
    from rayrag.errors import ConfigError

    for bad, message in [("disco.teachers=[]", "non-empty list"), ("disco.teachers=[a,a]", "distinct"),
                         ("disco.teacher_weights=[1.0,2.0]", "one per teacher"), ("disco.teacher_weights=[-1.0]", "non-negative"), ("disco.reg=l2", "flops"),
                         ("disco.kl_weight=0", "not both 0"), ("disco.temperature=0", "> 0"),
                         ("disco.student_scale=-0.5", "student_scale must be > 0"), ("disco.max_candidates=1", ">= 2")]:
        extra = ["disco.contrastive_weight=0"] if bad.startswith("disco.kl") else []
        with pytest.raises(ConfigError, match=message):
            load_config(TrainConfig, None, ["objective=disco", bad, *extra])


def test_each_train_job_refuses_the_others_objectives(tmp_path):
    from rayrag.cli import main, parse

    assert main(["train-dense", f"examples={tmp_path}/x.jsonl", "objective=disco"]) == 2
    assert main(["train-sparse", f"examples={tmp_path}/x.jsonl", "objective=infonce"]) == 2
    _, cfg = parse(["train-sparse", f"examples={tmp_path}/x.jsonl"])
    assert (cfg.objective, cfg.model, cfg.holdout) == ("disco", "splade-tiny", None)


def test_frozen_document_side_and_export_round_trip(tmp_path, tiny_mlm, disco_files):
    """A few plain-PyTorch steps: the student moves and its loss falls on a repeated batch; the
    document encoder stays bit-identical, outside the optimizer; the exported folder encodes a
    query exactly as the training forward does."""
    from rayrag.models.sparse import SpladeEncoder
    from rayrag.train.engine import make_optimizer
    from rayrag.train.objectives import make_objective
    from rayrag.train.objectives.sparse import META, fingerprint
    from rayrag.train.run import prepare_data

    cfg = _cfg(tmp_path, tiny_mlm, disco_files[0], "lr=5e-3", "disco.reg_weight=1e-3", "batch_size=4",
               "warmup_ratio=0")
    data = prepare_data(cfg)
    objective = make_objective(cfg)
    module = objective.build(str(tiny_mlm))
    before = fingerprint(objective.doc_encoder)
    optimizer, _ = make_optimizer(module, cfg, 10)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in in_optimizer for p in objective.doc_encoder.parameters())
    assert not any(p.requires_grad for p in objective.doc_encoder.parameters()) and not objective.doc_encoder.training
    turns = [objective.group(ex, i, 0, data["text"]) for i, ex in enumerate(data["examples"][:4])]
    batch = objective.collate(turns)
    assert batch["mask"].sum(1).tolist() == [len(t.docs) for t in turns]
    losses = []
    for step in range(6):
        objective.step = step
        loss = objective.loss(module, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert fingerprint(objective.doc_encoder) == before
    assert fingerprint(module.mlm) != before  # the student did move
    folder = objective.export(module, tmp_path / "model")
    meta = json.loads((folder / META).read_text())
    assert meta["role"] == "query" and meta["doc_encoder_sha256"] == before
    query = data["examples"][0].query
    enc = SpladeEncoder(str(folder), max_length=cfg.query_max_length, device="cpu")
    exported = enc.encode([query], progress=False).toarray()
    module.eval()
    with torch.no_grad():
        q = objective._tok([query], cfg.query_max_length)
        trained = module(q["input_ids"], q["attention_mask"]).numpy()
    np.testing.assert_allclose(exported, trained, rtol=1e-5, atol=1e-6)
    assert (exported > 0).any()
    # a changed document encoder is refused at export: the index would no longer match
    with torch.no_grad():
        next(objective.doc_encoder.parameters()).add_(1.0)
    with pytest.raises(RuntimeError, match="frozen document encoder changed"):
        objective.export(module, tmp_path / "model2")


def test_train_sparse_refuses_a_beir_holdout(tmp_path, tiny_mlm, disco_files):
    from rayrag.errors import ConfigError
    from rayrag.train.run import prepare_data

    with pytest.raises(ConfigError, match="DiSCo holds out conversations"):
        prepare_data(_cfg(tmp_path, tiny_mlm, disco_files[0], "holdout=dev"))


def test_two_worker_zero2_disco_run_matches_plain_pytorch(ray_local, tmp_path, tiny_mlm, disco_files):
    """FLOPS over both workers' queries, the frozen side and held-out conversations, end to end."""
    from safetensors.torch import load_file

    from rayrag.train import run_train
    from rayrag.train.objectives.sparse import META, fingerprint
    from rayrag.train.reference import plain_pytorch_run

    train, held = disco_files
    cfg = _cfg(tmp_path, tiny_mlm, train, "num_workers=2", "zero_stage=2", "batch_size=2", "max_steps=3",
               "lr=1e-3", "warmup_ratio=0.3", "disco.reg_weight=0.05", "disco.reg_warmup_steps=2",
               f"disco.eval_examples={held}", "eval.before_training=true")
    result = run_train(cfg)
    assert result["examples"] == 15 and result["held_out_examples"] == 3  # conv5's turns are evaluation's
    history = json.loads((tmp_path / "out" / "loss_history.json").read_text())
    reference = plain_pytorch_run(cfg, 3)
    np.testing.assert_allclose(history["losses"], reference.losses, rtol=1e-4, atol=1e-5)
    model_dir = Path(result["model_dir"])
    trained = load_file(str(model_dir / "model.safetensors"))
    ref = reference.module.mlm.state_dict()
    # Adam divides by sqrt(v): an embedding row whose gradient is float noise (a rare token's,
    # from the FLOPS term through the tied MLM head) moves by a noise-driven amount in both runs,
    # up to lr per step whatever the gradient's size. Seen in CI: 4 of 976,704 elements, one row,
    # 4e-4 apart. So: every element within 1e-4 but at most a few dozen (one row), and those
    # within Adam's bound of steps * lr; a wrong gradient moves far more elements than that.
    steps, lr = 3, 1e-3
    for name, value in trained.items():
        diff = np.abs(value.numpy() - ref[name].numpy())
        off = int((diff > 1e-4).sum())
        assert off <= 32 and float(diff.max()) <= steps * lr, (name, off, float(diff.max()))
    initial = load_file(str(tiny_mlm / "model.safetensors"))
    assert max(float((trained[n] - initial[n]).abs().max()) for n in trained if n in initial) > 1e-3
    from transformers import AutoModelForMaskedLM

    meta = json.loads((model_dir / META).read_text())
    assert meta["doc_encoder_sha256"] == fingerprint(AutoModelForMaskedLM.from_pretrained(tiny_mlm))
    for key in ("eval/ndcg@10", "eval/mrr@10", "eval_untrained/ndcg@10", "eval/teacher_human/ndcg@10"):
        assert 0 <= result[key] <= 1, key
    assert result["eval/query_terms"] > 0


def _pool_index(folder: Path, model: Path, docs: dict[str, str], max_length: int) -> None:
    """A sparse index of ``docs`` encoded by ``model``, written as the index job writes one."""
    from rayrag.encode.pipeline import model_fingerprint
    from rayrag.index.sparse_index import InvertedIndex
    from rayrag.index.store import save_index
    from rayrag.models.sparse import SpladeEncoder

    ids = sorted(docs)
    matrix = SpladeEncoder(str(model), max_length=max_length, device="cpu").encode([docs[i] for i in ids],
                                                                                   progress=False)
    save_index(folder, "sparse", InvertedIndex(matrix), ids,
               {"model": str(model), "model_version": model_fingerprint(str(model)), "dim": matrix.shape[1]})


def test_document_vectors_from_the_pool_index_give_the_frozen_encoders_loss(tmp_path, tiny_mlm, disco_files):
    """disco.doc_index: candidates' vectors read from the index equal the frozen encoder's, so the
    loss is the same as re-encoding; an index of other weights or lacking a candidate is refused."""
    from rayrag.train.objectives import make_objective
    from rayrag.train.run import prepare_data

    base = _cfg(tmp_path, tiny_mlm, disco_files[0], "doc_max_length=64")
    data = prepare_data(base)
    _pool_index(tmp_path / "idx-test", tiny_mlm, data["text"], 64)
    cfg = _cfg(tmp_path, tiny_mlm, disco_files[0], "doc_max_length=64", f"disco.doc_index={tmp_path}/idx-{{domain}}")
    fast = prepare_data(cfg)
    assert fast["text"] == {} and fast["doc_reps"].matrix.shape[0] == len(data["text"])
    losses = []
    for c, d in ((base, data), (cfg, fast)):
        objective = make_objective(c)
        objective.attach(d)
        module = objective.build(str(tiny_mlm))
        batch = objective.collate([objective.group(ex, i, 0, d["text"]) for i, ex in enumerate(d["examples"][:4])])
        assert ("d_reps" in batch) == (c is cfg)
        losses.append(objective.loss(module, batch).item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    # another model's index: its vectors are not the frozen encoder's
    other = tmp_path / "other-mlm"
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    torch.manual_seed(1)
    m = AutoModelForMaskedLM.from_pretrained(tiny_mlm)
    with torch.no_grad():
        next(m.parameters()).add_(0.5)
    m.save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_mlm).save_pretrained(other)
    _pool_index(tmp_path / "bad-test", other, data["text"], 64)
    with pytest.raises(DataError, match="not by the frozen document encoder"):
        prepare_data(_cfg(tmp_path, tiny_mlm, disco_files[0], f"disco.doc_index={tmp_path}/bad-{{domain}}"))
    _pool_index(tmp_path / "few-test", tiny_mlm, dict(list(data["text"].items())[:3]), 64)
    with pytest.raises(DataError, match="lacks .* candidate"):
        prepare_data(_cfg(tmp_path, tiny_mlm, disco_files[0], f"disco.doc_index={tmp_path}/few-{{domain}}"))
