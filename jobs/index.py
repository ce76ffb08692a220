"""Build a FAISS (dense) or inverted (sparse) index from an encode output folder.

    python -m jobs.index --config jobs/configs/index_scifact_minilm_hnsw.yaml
    python -m jobs.index --embeddings out/encode-scifact-minilm --kind ivfpq --output-dir out/index-ivfpq
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.index --config jobs/configs/index_scifact_minilm_hnsw.yaml
"""
import sys

from rayrag.cli import main

if __name__ == "__main__":
    sys.exit(main(["index", *sys.argv[1:]]))
