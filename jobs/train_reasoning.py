"""Train a reasoning embedder (LREM) with Ray Train + DeepSpeed: stage 1 (lrem-sft), stage 2 (lrem-grpo).

    python -m jobs.train_reasoning --config jobs/configs/train_scifact_lrem_sft.yaml [key=value ...]
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.train_reasoning --config jobs/configs/train_scifact_lrem_sft.yaml
"""
from rayrag.cli import job_main

if __name__ == "__main__":
    job_main(__file__)
