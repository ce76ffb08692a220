import subprocess
import sys
from pathlib import Path

import pytest

from rayrag.cli import JOBS, TOOLS, build_parser, main, parse

REPO = Path(__file__).resolve().parents[1]

SUBCOMMANDS = [["quickstart"], ["evaluate"], ["evaluate-mtrag"], ["encode"], ["index"], ["index-delete"], ["mine"], ["cot"], ["rewrite"], ["teacher-scores"], ["train-dense"], ["train-reranker"], ["train-sparse"], ["train-reasoning"], ["serve"], ["serve", "run"], ["serve", "build"], ["data"], ["data", "download"], ["data", "check"],
               ["models"], ["models", "list"], ["models", "resolve"]]


@pytest.mark.parametrize("cmd", [[]] + SUBCOMMANDS, ids=lambda c: " ".join(c) or "rayrag")
def test_help_on_every_subcommand(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(cmd + ["--help"])
    assert e.value.code == 0
    assert "usage: rayrag" in capsys.readouterr().out


def test_every_subcommand_is_covered():
    parser = build_parser()
    top = next(a for a in parser._actions if a.dest == "command")
    listed = {tuple(c) for c in SUBCOMMANDS}
    for name, sub in top.choices.items():
        assert (name,) in listed
        for a in sub._actions:
            if getattr(a, "choices", None) and isinstance(a.choices, dict):
                assert all((name, n) in listed for n in a.choices)


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "rayrag.cli", "models", "list"], capture_output=True, text=True)
    assert out.returncode == 0 and "minilm" in out.stdout and "splade-tiny" in out.stdout


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "retrievers=colbert"], "unknown retriever 'colbert'"),
    (["evaluate", "depth=-1"], "depth must be >= 1"),
    (["evaluate", "--dataset", "nfcorpus"], "dataset 'nfcorpus' not found"),
    (["models", "resolve", "not-a-model"], "unknown model"),
    (["data", "check", "scifact", "--split", "validation"], "split 'validation' not found"),
    (["train-dense", "objective=lce"], "use train-reranker"),
    (["train-reranker", "examples=/nonexistent/train.jsonl"], "training examples not found"),
    (["train-reranker", "--model", "not-a-model"], "unknown model"),
    (["evaluate", "rerank=not-a-model"], "unknown model"),
])
def test_errors_exit_2_with_one_clear_line(argv, message, capsys, monkeypatch, data_dir):
    monkeypatch.setenv("RAYRAG_DATA_DIR", str(data_dir))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rayrag: error: ") and message in err and "Traceback" not in err


def test_data_check(capsys, data_dir):
    assert main(["data", "check", "scifact", "--data-dir", str(data_dir)]) == 0
    assert "docs=5183, queries=300" in capsys.readouterr().out
    assert main(["data", "check", "scifact", "--split", "dev", "--data-dir", str(data_dir)]) == 0
    assert "split='dev', docs=5183, queries=100" in capsys.readouterr().out  # held out of train


def test_every_job_has_its_entry_point_and_every_entry_point_a_command():
    entries = {f"jobs.{p.stem}" for p in (REPO / "jobs").glob("*.py") if p.stem != "__init__"}
    assert {j.module for j in JOBS.values()} | {"jobs.serve"} == entries  # serve: the one tool with an entry point
    assert "serve" in TOOLS


def test_entry_point_runs_the_registered_job():
    out = subprocess.run([sys.executable, "-m", "jobs.train_reranker", "--help"], cwd=REPO, capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.startswith("usage: rayrag train-reranker")
    assert "llm_yesno" in out.stdout and "infonce" not in out.stdout  # its objectives only


@pytest.mark.parametrize("name", sorted(JOBS))
def test_every_flag_is_the_same_as_its_key_value(name, tmp_path):
    job = JOBS[name]
    for key in job.flags:
        flag = f"--{key.replace('_', '-')}"
        _, by_flag = parse([name, flag, str(tmp_path / "x")])
        _, by_key = parse([name, f"{key}={tmp_path / 'x'}"])
        assert by_flag == by_key and getattr(by_flag, key) == str(tmp_path / "x")


def test_one_way_to_set_a_value():
    with pytest.raises(SystemExit) as e:  # the per-field flags are gone: key=value sets them
        parse(["evaluate", "--retrievers", "bm25"])
    assert e.value.code == 2
    _, cfg = parse(["evaluate", "retrievers=[bm25,minilm,hybrid(bm25,minilm)]"])
    assert cfg.retrievers == ["bm25", "minilm", "hybrid(bm25,minilm)"]


def test_job_defaults_sit_beneath_the_config_file(tmp_path):
    assert parse(["train-reranker"])[1].objective == "lce"
    assert parse(["train-dense"])[1].objective == "infonce"
    f = tmp_path / "c.yaml"
    f.write_text("model: minilm\n")
    assert parse(["train-reranker", "--config", str(f)])[1].objective == "lce"
    f.write_text("objective: llm_yesno\n")
    assert parse(["train-reranker", "--config", str(f)])[1].objective == "llm_yesno"


def test_building_the_command_imports_no_torch():
    """Every `rayrag` command builds the whole parser; the train jobs' objective list waits for --help."""
    code = "import sys; from rayrag.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]
