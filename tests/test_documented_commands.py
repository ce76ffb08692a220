"""Every rayrag command the repo documents parses and loads its config, without running.

Sources: code blocks and inline code in every Markdown file, the docstrings of jobs/*.py, the
header comments of jobs/configs/**/*.yaml, and every string and comment in k8s/ (RayJob
entrypoints, overlay patches, the RayService header). A command is ``python -m jobs.<job> ...``
or ``rayrag ...`` at a command position. Each goes through the real parser (``rayrag.cli.parse``:
flags, --config, key=value, the job's checks); serve commands also load their Serve config. So
removing a flag or renaming a config key breaks this test, not a reader's copy-paste.
"""
import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml

from rayrag.cli import JOBS, parse

REPO = Path(__file__).resolve().parents[1]
PYTHON_JOB = re.compile(r"python -m jobs\.([a-z][a-z_]*)((?:\s.*)?)$")
RAYRAG = re.compile(r"(?:^|\s--\s|&&\s*|;\s*|\$\s+)rayrag(\s.*)$")
SHELL_END = {"|", "||", "&&", ";", "&", ">", ">>", "2>&1"}


def _command(text: str, rayrag: bool) -> list[str] | None:
    """argv for ``rayrag`` from a line that runs one, or None. ``rayrag``: also look for
    ``rayrag ...`` (in shell code, not in comments, where the word starts sentences)."""
    text = text.replace("[key=value ...]", "")  # the headers' placeholder for "any overrides"
    m = PYTHON_JOB.search(text)
    if m:
        head, rest = [m.group(1).replace("_", "-")], m.group(2)
    else:
        m = RAYRAG.search(text.strip()) if rayrag else None
        if not m:
            return None
        head, rest = [], m.group(1)
    words = shlex.split(rest, comments=True)
    end = next((i for i, w in enumerate(words) if w in SHELL_END), len(words))
    return head + words[:end]


def _markdown(path: Path):
    lines, fenced, i, prose = path.read_text().splitlines(), False, 0, []
    while i < len(lines):
        line, start = lines[i], i + 1
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            while line.endswith("\\") and i + 1 < len(lines):  # shell continuation lines
                i += 1
                line = line[:-1] + " " + lines[i].strip()
            yield start, line, True
        elif line.strip():
            prose.append((start, line))
        if (fenced or not line.strip() or i + 1 == len(lines)) and prose:
            yield from _inline_code(prose)
            prose = []
        i += 1


def _inline_code(paragraph: list[tuple[int, str]]):
    """Commands in `code spans` of a paragraph; a span may wrap onto the next line."""
    text = "\n".join(line for _, line in paragraph)
    for m in re.finditer(r"`([^`]+)`", text):
        span = " ".join(m.group(1).split())
        if span.startswith(("python -m jobs.", "rayrag ")):
            yield paragraph[0][0] + text.count("\n", 0, m.start()), span, True


def _yaml_header(path: Path):
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.startswith("#"):
            return
        yield n, line.lstrip("# "), False


def _job_docstring(path: Path):
    doc = ast.get_docstring(ast.parse(path.read_text()), clean=False) or ""
    for n, line in enumerate(doc.splitlines(), 2):
        yield n, line, False


def _k8s(path: Path):
    text = path.read_text()
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            yield n, line.lstrip().lstrip("# "), False

    def strings(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from strings(v)
        elif isinstance(node, list):
            for v in node:
                yield from strings(v)
        elif isinstance(node, str) and "python -m jobs." in node:
            inner = yaml.safe_load(node) if "\n" in node else None
            if isinstance(inner, (dict, list)):  # a kustomize patch held as a string
                yield from strings(inner)
            else:
                yield " ".join(node.split())  # folded or multi-line entrypoints read as one line

    for doc in yaml.safe_load_all(text):
        for s in strings(doc):
            start = s[s.index("python -m jobs."):][:40]
            yield next((n for n, line in enumerate(text.splitlines(), 1) if start in line), 0), s, False


def documented_commands() -> list[tuple[str, list[str]]]:
    sources = [(p, _markdown) for p in sorted({*REPO.glob("*.md"), *REPO.glob("docs/**/*.md"), *REPO.glob("k8s/**/*.md"),
                                               *REPO.glob("mlflow/**/*.md"), *REPO.glob("bench/**/*.md")})]
    sources += [(p, _job_docstring) for p in sorted((REPO / "jobs").glob("*.py"))]
    sources += [(p, _yaml_header) for p in sorted((REPO / "jobs" / "configs").rglob("*.yaml"))]
    sources += [(p, _k8s) for p in sorted((REPO / "k8s").rglob("*.yaml"))]
    found = []
    for path, read in sources:
        for line, text, rayrag in read(path):
            argv = _command(text, rayrag)
            if argv is not None:
                found.append((f"{path.relative_to(REPO)}:{line}", argv))
    return found


COMMANDS = documented_commands()


def test_every_job_is_documented():
    documented = {argv[0] for _, argv in COMMANDS if argv}
    assert set(JOBS) <= documented, f"jobs without a documented command: {sorted(set(JOBS) - documented)}"


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[f"{w} {' '.join(a)[:60]}" for w, a in COMMANDS])
def test_documented_command_parses(where, argv, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # documented paths are relative to the repo root
    if "--help" in argv or "-h" in argv or not argv:
        with pytest.raises(SystemExit) as e:
            parse(argv or ["--help"])
        assert e.value.code == 0, f"{where}: {' '.join(argv)}"
        return
    try:
        args, _ = parse(argv)
    except SystemExit as e:
        pytest.fail(f"{where}: `rayrag {' '.join(argv)}` no longer parses: {capsys.readouterr().err.strip()}")
    if args.command == "serve":
        from rayrag.serve.serve_yaml import read

        read(args.config, args.overrides)
