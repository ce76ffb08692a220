"""Train a SPLADE query encoder (DiSCo) with Ray Train + DeepSpeed.

    python -m jobs.train_sparse --config jobs/configs/train_mtrag_disco.yaml [key=value ...]
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.train_sparse --config jobs/configs/train_mtrag_disco_gpu.yaml
"""
from rayrag.cli import job_main

if __name__ == "__main__":
    job_main(__file__)
