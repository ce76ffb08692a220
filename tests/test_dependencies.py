"""Every third-party import of the library and the jobs is a direct main dependency.

CI installs the test extra, so a library import of a test-only package (httpx once) passes every
other test and fails only for users. deptry (a maintained checker for exactly this) reads the
imports and pyproject.toml: DEP001 missing, DEP003 only transitive, DEP004 test-only.
"""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEPTRY = Path(sys.executable).parent / "deptry"


def _deptry(*paths: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([str(DEPTRY), "--no-ansi", *paths, *extra], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"NO_COLOR": "1", "PATH": str(DEPTRY.parent)})


def test_library_and_jobs_import_only_direct_main_dependencies():
    proc = _deptry("platform/rayrag", "jobs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No dependency issues found" in proc.stdout + proc.stderr


def test_the_checker_names_a_test_only_import_with_its_line():
    proc = _deptry("tests/fixtures/deps", extra=("--ignore", "DEP002", "--exclude", r"\.venv"))  # the default excludes tests/
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    line = next(i for i, text in enumerate((REPO / "tests/fixtures/deps/leaky.py").read_text().splitlines(), 1)
                if text.startswith("import pytrec_eval"))
    assert f"tests/fixtures/deps/leaky.py:{line}:" in out and "DEP004 'pytrec_eval'" in out, out
