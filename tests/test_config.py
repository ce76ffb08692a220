import re
from pathlib import Path

import pytest

from rayrag.cli import JOBS, parse
from rayrag.config import load_config, parse_overrides
from rayrag.errors import ConfigError
from rayrag.eval.job import EvaluateConfig

REPO = Path(__file__).resolve().parents[1]


def test_yaml_then_overrides_then_flags(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("dataset: nfcorpus\ndepth: 50\nmetrics: [ndcg@10]\noptions:\n  batch_size: 8\n")
    cfg = load_config(EvaluateConfig, f, ["depth=20", "options.bm25_k1=1.2", "retrievers=[bm25]"], split="dev")
    assert (cfg.dataset, cfg.depth, cfg.split, cfg.retrievers) == ("nfcorpus", 20, "dev", ["bm25"])
    assert cfg.options.batch_size == 8 and cfg.options.bm25_k1 == 1.2
    assert load_config(EvaluateConfig, None, ["retrievers=bm25,minilm"]).retrievers == ["bm25", "minilm"]
    assert load_config(EvaluateConfig, None, retrievers="bm25,rrf(bm25,minilm)").retrievers == ["bm25", "rrf(bm25,minilm)"]


@pytest.mark.parametrize("overrides, message", [
    (["nope=1"], "unknown config key(s) nope"),
    (["options.nope=1"], "unknown config key(s) options.nope"),
    (["depth=ten"], "depth: expected an integer"),
    (["depth=0"], "depth must be >= 1"),
    (["retrievers=[bm25,bm25]"], "duplicate"),
    (["retrievers=[colbert]"], "unknown retriever 'colbert'"),
    (["retrievers=[]"], "at least one retriever"),
    (["metrics=[ndcg]"], "needs a cutoff"),
    (["metrics=[ndcg@1000]"], "needs depth >= 1000"),
    (["metrics=[bleu@4]"], "unknown metric"),
    (["depth"], "not of the form key=value"),
    (["options=3"], "expected a mapping"),
])
def test_bad_overrides_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(EvaluateConfig, None, overrides)


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(EvaluateConfig, tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(EvaluateConfig, tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(EvaluateConfig, tmp_path / "broken.yaml")


def test_override_values_are_yaml_scalars():
    assert parse_overrides(["a.b=1", "c=x", "d=true", "e=[1,2]", "f="]) == {
        "a": {"b": 1}, "c": "x", "d": True, "e": [1, 2], "f": ""}


def test_list_overrides_split_outside_brackets_and_quotes():
    """YAML alone splits inside the parentheses: ['bm25', 'minilm', 'hybrid(bm25', 'minilm)']."""
    assert parse_overrides(["r=[bm25,minilm,hybrid(bm25,minilm)]"]) == {"r": ["bm25", "minilm", "hybrid(bm25,minilm)"]}
    cfg = load_config(EvaluateConfig, None,
                      ["retrievers=[bm25, minilm, hybrid(bm25,minilm), rrf(bm25,hybrid(bm25,minilm))]"])
    assert cfg.retrievers == ["bm25", "minilm", "hybrid(bm25,minilm)", "rrf(bm25,hybrid(bm25,minilm))"]
    assert parse_overrides(['a=[[1,2],[3]]', 'b=["x,y", z]', "c=[]", "d=[1,]", "e=[{k: 1, j: 2}]"]) == {
        "a": [[1, 2], [3]], "b": ["x,y", "z"], "c": [], "d": [1], "e": [{"k": 1, "j": 2}]}
    for bad, message in [("a=[x,,y]", "empty list item"), ("a=[rrf(x]", "unbalanced"), ('a=["x]', "unbalanced quotes")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_overrides([bad])


CONFIGS = sorted((REPO / "jobs" / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads_and_names_its_command(path):
    first = path.read_text().splitlines()[0]
    m = re.fullmatch(r"# python -m jobs\.(\w+) --config (\S+)( \[key=value \.\.\.\])?", first)
    assert m, f"{path.name}: first line must be the command that runs it, got {first!r}"
    job, cfg_path = m.group(1), m.group(2)
    assert (REPO / "jobs" / f"{job}.py").is_file(), f"{path.name} names missing job module jobs/{job}.py"
    assert (REPO / cfg_path).resolve() == path.resolve(), f"{path.name} header points at {cfg_path}"
    by_module = {j.module: j for j in JOBS.values()}
    assert f"jobs.{job}" in by_module, f"{path.name}: jobs.{job} is not a registered job"
    parse([by_module[f"jobs.{job}"].name, "--config", str(path)])  # loads and checks it as the job would
