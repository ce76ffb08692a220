#!/usr/bin/env bash
# Run an MLflow tracking server on 127.0.0.1 for rayrag jobs.
#
#   bash mlflow/run-local.sh                     # SQLite backend in ./mlflow-server/
#   BACKEND=postgresql://user:pw@127.0.0.1:5432/mlflow bash mlflow/run-local.sh
#
# then, in the shell that runs jobs:
#   export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
#
# Artifacts are proxied by the server (--artifacts-destination), so job processes on other
# machines need no access to the artifact folder or bucket; point ARTIFACTS at s3://... for S3.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${MLFLOW_SERVER_ROOT:-$PWD/mlflow-server}"
mkdir -p "$root"
backend="${BACKEND:-sqlite:///$root/mlflow.db}"
artifacts="${ARTIFACTS:-$root/artifacts}"
port="${PORT:-5000}"
py=".venv/bin/python"
[ -x "$py" ] || py=python3
if [[ "$backend" == postgresql* ]]; then
  "$py" -c "import psycopg2" 2>/dev/null || { echo "PostgreSQL backend needs: pip install psycopg2-binary" >&2; exit 1; }
fi
echo "MLflow on http://127.0.0.1:$port  backend=$backend  artifacts=$artifacts"
exec "$py" -m mlflow server --host 127.0.0.1 --port "$port" \
  --backend-store-uri "$backend" --artifacts-destination "$artifacts" --workers "${WORKERS:-1}"
