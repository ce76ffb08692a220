"""Fail closed: an open API only on loopback, and only trained rerankers load (no Ray here)."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("192.168.0.9", False), ("serve.example", False),
    ("", False), (None, False)])
def test_loopback_addresses(host, loopback):
    from rayrag.serve.auth import is_loopback

    assert is_loopback(host) is loopback


def test_an_open_api_is_refused_off_loopback():
    from rayrag.errors import ConfigError
    from rayrag.serve.auth import check_exposure
    from rayrag.serve.config import Auth

    with pytest.raises(ConfigError, match="refusing to serve on 0.0.0.0 without an API key.*allow_anonymous"):
        check_exposure(Auth(), None, "0.0.0.0")
    with pytest.raises(ConfigError, match="10.0.0.5"):
        check_exposure(Auth(), None, "10.0.0.5")
    check_exposure(Auth(), b"k", "0.0.0.0")  # a key: fine anywhere
    check_exposure(Auth(), None, "127.0.0.1")  # loopback: only this machine reaches it
    check_exposure(Auth(allow_anonymous=True), None, "0.0.0.0")  # the explicit opt-out


def test_serve_run_off_loopback_without_a_key_stops_before_ray_starts():
    env = {k: v for k, v in os.environ.items() if k not in ("RAYRAG_API_KEY", "RAY_ADDRESS")}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "jobs.serve", "run", "--config", "jobs/configs/serve/scifact.yaml",
                           "--host", "0.0.0.0", "--no-block"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refusing to serve on 0.0.0.0 without an API key" in proc.stderr
    assert "Traceback" not in proc.stderr and "Started a local Ray instance" not in proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 60


def test_the_untrained_reranker_flag_of_old_is_gone():
    from rayrag.config import from_dict
    from rayrag.errors import ConfigError
    from rayrag.serve.config import ServeConfig

    with pytest.raises(ConfigError, match="allow_untrained_reranker"):
        from_dict(ServeConfig, {"index": "x", "allow_untrained_reranker": True})


def test_a_checkpoint_without_its_scoring_head_is_refused_whatever_its_config_says(tmp_path, tiny_bert):
    from rayrag.models.reranker import UntrainedReranker, load_reranker

    with pytest.raises(UntrainedReranker, match="no trained scoring head: .*classifier.weight"):
        load_reranker(str(tiny_bert), kind="cross")
    # a config that claims a classifier does not make the missing head trained
    liar = tmp_path / "liar"
    shutil.copytree(tiny_bert, liar)
    cfg = json.loads((liar / "config.json").read_text())
    (liar / "config.json").write_text(json.dumps({**cfg, "architectures": ["BertForSequenceClassification"]}))
    with pytest.raises(UntrainedReranker):
        load_reranker(str(liar))
    # the development flag loads the stand-in, with the same seeded head every time
    a = load_reranker(str(tiny_bert), kind="cross", allow_untrained=True, max_length=64)
    b = load_reranker(str(tiny_bert), kind="cross", allow_untrained=True, max_length=64)
    docs = ["Vitamin D improves bone density.", "The stock market fell."]
    assert (a.score("vitamin D bones", docs) == b.score("vitamin D bones", docs)).all()


def test_a_trained_reranker_loads_without_the_flag(tmp_path, tiny_bert, data_dir):
    from rayrag.models.reranker import load_reranker
    from tests.serve_fixtures import make_corpus, make_reranker

    folder = make_reranker(tiny_bert, tmp_path / "reranker", make_corpus(data_dir, tmp_path, n=40))
    r = load_reranker(str(folder), max_length=64)
    assert r.kind == "cross" and r.score("cells", ["a cell", "a rock"]).shape == (2,)


def test_a_causal_lm_missing_weights_is_refused(tmp_path):
    """The LLM kind scores with the LM head; a checkpoint lacking it is refused the same way."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from rayrag.assets import resolve_model
    from rayrag.models.reranker import UntrainedReranker, load_reranker
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    folder = tmp_path / "llm"
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(resolve_model("minilm").path)  # any tokenizer: only loading is tested
    tok.save_pretrained(folder)
    assert load_reranker(str(folder), kind="llm").kind == "llm"
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("lm_head")}, folder / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(UntrainedReranker, match="lm_head"):
        load_reranker(str(folder), kind="llm")
