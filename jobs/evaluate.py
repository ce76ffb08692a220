"""Evaluate retrievers on a BEIR dataset inside Ray.

    python -m jobs.evaluate --dataset scifact --split test --output-dir out/eval
    python -m jobs.evaluate --config jobs/configs/evaluate_scifact.yaml depth=1000
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.evaluate --config jobs/configs/evaluate_scifact.yaml
"""
import sys

from rayrag.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
