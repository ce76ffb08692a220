"""Build a FAISS (dense) or inverted (sparse) index from an encode output folder.

    python -m jobs.index --config jobs/configs/index_scifact_minilm_hnsw.yaml
    python -m jobs.index --output-dir out/index-ivfpq embeddings=out/encode-scifact-minilm faiss.kind=ivfpq
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.index --config jobs/configs/index_scifact_minilm_hnsw.yaml
"""
from rayrag.cli import job_main

if __name__ == "__main__":
    job_main(__file__)
