import pytest

from rayrag.assets import BUILTINS, load_tokenizer, resolve_model
from rayrag.errors import ModelNotFoundError


@pytest.mark.parametrize("name", ["minilm", "splade-tiny"])
def test_builtin_names_resolve_to_real_weights(name):
    from transformers import AutoConfig

    m = resolve_model(name)
    assert m.kind == BUILTINS[name].kind
    cfg = AutoConfig.from_pretrained(m.path)
    assert cfg.model_type == "bert"


def test_smollm2_is_converted_once_to_an_fp32_folder_and_its_tokenizer_needs_no_conversion(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("RAYRAG_CACHE_DIR", str(tmp_path))
    from_gguf = load_tokenizer("smollm2-135m")  # a job that needs only the tokenizer converts nothing
    assert not list(tmp_path.iterdir())
    m = resolve_model("smollm2-135m")
    assert m.path.startswith(str(tmp_path)) and m.kind == "causal"
    model = AutoModelForCausalLM.from_pretrained(m.path, dtype=torch.float32)
    assert model.config.hidden_size == 576 and not hasattr(model.config, "quantization_config")
    assert next(model.parameters()).dtype == torch.float32
    assert not [p for p in tmp_path.rglob(".smollm2-*")], "no temp folder left behind"
    assert resolve_model("smollm2-135m").path == m.path  # second call reuses the cache
    converted = load_tokenizer("smollm2-135m")  # now from the converted folder: the same tokenizer
    assert converted.name_or_path == m.path
    assert converted.get_vocab() == from_gguf.get_vocab() and converted.chat_template == from_gguf.chat_template
    assert [converted.bos_token_id, converted.eos_token_id] == [from_gguf.bos_token_id, from_gguf.eos_token_id]
    text = "does aspirin reduce stroke risk, a claim"
    assert converted(text)["input_ids"] == from_gguf(text)["input_ids"]


def test_local_folder_resolves(tiny_bert):
    m = resolve_model(str(tiny_bert))
    assert m.path == str(tiny_bert.resolve()) and m.kind is None


@pytest.mark.parametrize("name, message", [
    ("no-such-model", "unknown model 'no-such-model'"),
    ("", "non-empty string"),
    ("org-that-does-not-exist/model-xyz", "neither in the local HF cache nor downloadable"),
])
def test_unresolvable_names_say_what_to_do(name, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match=message):
        resolve_model(name)


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a Hugging Face model folder"):
        resolve_model(str(tmp_path))
