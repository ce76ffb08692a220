"""Encode a corpus into embedding shards with a Ray Data actor pool.

    python -m jobs.encode --config jobs/configs/encode_scifact_minilm.yaml
    python -m jobs.encode --model splade-tiny --dataset scifact --output-dir out/enc-splade
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.encode --config jobs/configs/encode_scifact_minilm.yaml
"""
from rayrag.cli import job_main

if __name__ == "__main__":
    job_main(__file__)
