"""No module imports from a layer above its own: the layers are the block in docs/DESIGN.md."""
import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "platform" / "rayrag"


def layers() -> list[list[str]]:
    """The ``## Layering`` code block of docs/DESIGN.md, bottom layer first."""
    text = (REPO / "docs" / "DESIGN.md").read_text()
    block = re.search(r"^## Layering\n.*?```\n(.*?)```", text, re.S | re.M)
    assert block, "docs/DESIGN.md needs a '## Layering' section with a code block"
    rows = [re.split(r"\s{2,}", line.strip())[0] for line in block.group(1).splitlines() if line.strip()]
    return [[name.strip() for name in row.split(",")] for row in reversed(rows)]


def level_of() -> dict[str, int]:
    return {name: i for i, row in enumerate(layers()) for name in row}


def top_level_units() -> set[str]:
    """Packages and modules directly under rayrag/ (the units the layering places)."""
    return {p.stem for p in ROOT.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}


def _resolve(module: str, level: int, name_parts: list[str], is_pkg: bool) -> list[str] | None:
    """The absolute dotted name (as parts) an import refers to, or None outside rayrag."""
    if level:
        base = name_parts if is_pkg else name_parts[:-1]
        base = base[:len(base) - (level - 1)] if level > 1 else base
        return base + (module.split(".") if module else [])
    return module.split(".") if module and module.split(".")[0] == "rayrag" else None


def imports(path: Path) -> list[tuple[int, list[str]]]:
    """(line, rayrag module parts) for every import in the file, inside functions too."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts, is_pkg = list(rel.parts), rel.name == "__init__"
    if is_pkg:
        parts = parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")) for a in node.names if a.name.split(".")[0] == "rayrag"]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module, node.level, parts, is_pkg)
            if target is None:
                continue
            for alias in node.names:  # `from . import io` names a module; `from .x import f` does not
                sub = ROOT.parent.joinpath(*target, alias.name)
                found.append((node.lineno, target + [alias.name] if sub.with_suffix(".py").exists()
                              or (sub / "__init__.py").exists() else target))
    return found


FILES = sorted(ROOT.rglob("*.py"))


def test_every_unit_has_a_layer():
    placed = level_of()
    missing = sorted(top_level_units() - set(placed))
    assert not missing, f"rayrag.{missing[0]} is in no layer: add it to the Layering block in docs/DESIGN.md"
    stale = sorted(set(placed) - top_level_units())
    assert not stale, f"docs/DESIGN.md's Layering names {stale}, which do not exist"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_from_a_higher_layer(path):
    level = level_of()
    unit = path.relative_to(ROOT).parts[0].removesuffix(".py")
    if unit == "__init__" or unit not in level:  # an unplaced unit fails test_every_unit_has_a_layer
        return
    for line, target in imports(path):
        if len(target) < 2 or target[1] == unit or target[1] not in level:  # package root, own unit
            continue
        assert level[target[1]] <= level[unit], (
            f"{path.relative_to(REPO)}:{line} imports rayrag.{'.'.join(target[1:])}: {unit} (layer "
            f"{level[unit]}) may not import {target[1]} (layer {level[target[1]]}); see docs/DESIGN.md")


def test_the_parser_sees_lazy_and_relative_imports():
    """Guard the guard: a known lazy relative import must be found and resolved."""
    found = {tuple(t) for _, t in imports(ROOT / "eval" / "job.py")}
    assert ("rayrag", "ray_utils") in found  # `from ..ray_utils import init_ray`, inside run_evaluate
    assert ("rayrag", "index", "store") in found  # `from ..index.store import load_index`, inside a function


@pytest.mark.parametrize("path", sorted((REPO / "jobs").glob("*.py")), ids=lambda p: p.name)
def test_job_entry_points_only_call_the_cli(path):
    mods = {a.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom)}
    assert mods <= {"sys", "rayrag.cli"}, f"{path.name} imports {sorted(mods)}: jobs/ only call rayrag.cli"
