#!/usr/bin/env bash
# Set up ./.venv (first run: a few minutes) and run the quickstart job.
# Needs RAYRAG_DATA_DIR (or pass --data-dir DIR) pointing at a folder with scifact/ in it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
exec "${RAYRAG_VENV:-.venv}/bin/python" -m jobs.quickstart "$@"
