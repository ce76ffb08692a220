import subprocess
import sys

import pytest

from rayrag.cli import build_parser, main

SUBCOMMANDS = [["quickstart"], ["evaluate"], ["encode"], ["index"], ["mine"], ["train-dense"], ["train-reranker"], ["serve"], ["serve", "run"], ["serve", "build"], ["data"], ["data", "download"], ["data", "check"],
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
    (["evaluate", "--retrievers", "colbert"], "unknown retriever 'colbert'"),
    (["evaluate", "depth=-1"], "depth must be >= 1"),
    (["evaluate", "--dataset", "nfcorpus"], "dataset 'nfcorpus' not found"),
    (["models", "resolve", "not-a-model"], "unknown model"),
    (["data", "check", "scifact", "--split", "validation"], "split 'validation' not found"),
    (["train-dense", "objective=lce"], "use train-reranker"),
    (["train-reranker", "--examples", "/nonexistent/train.jsonl"], "training examples not found"),
    (["train-reranker", "--model", "not-a-model"], "unknown model"),
    (["evaluate", "--rerank", "not-a-model"], "unknown model"),
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
