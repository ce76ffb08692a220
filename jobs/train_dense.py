"""Train a dense model with Ray Train + DeepSpeed.

    python -m jobs.train_dense --config jobs/configs/train_scifact_minilm.yaml [key=value ...]
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.train_dense --config jobs/configs/train_scifact_minilm.yaml
"""
from rayrag.cli import job_main

if __name__ == "__main__":
    job_main(__file__)
