"""Mine hard negatives for training queries.

    python -m jobs.mine --config jobs/configs/mine_scifact_bm25.yaml
    python -m jobs.mine --dataset scifact split=train retriever=minilm output=out/mine/minilm.jsonl
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.mine --config jobs/configs/mine_scifact_bm25.yaml
"""
from rayrag.cli import job_main

if __name__ == "__main__":
    job_main(__file__)
