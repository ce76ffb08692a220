"""Train a reranker model with Ray Train + DeepSpeed.

    python -m jobs.train_reranker --config jobs/configs/train_scifact_cross.yaml [key=value ...]
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.train_reranker --config jobs/configs/train_scifact_cross.yaml
"""
import sys

from rayrag.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-reranker", *sys.argv[1:]]))
