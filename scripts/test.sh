#!/usr/bin/env bash
# Set up ./.venv with the test extra and run the test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
exec "${RAYRAG_VENV:-.venv}/bin/python" -m pytest "$@"
