"""Evaluate retrievers on a BEIR dataset inside Ray.

    python -m jobs.evaluate --dataset scifact --output-dir out/eval split=test
    python -m jobs.evaluate --config jobs/configs/evaluate_scifact.yaml depth=1000
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.evaluate --config jobs/configs/evaluate_scifact.yaml
"""
from rayrag.cli import job_main

if __name__ == "__main__":
    job_main(__file__)
