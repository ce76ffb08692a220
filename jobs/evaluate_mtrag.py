"""Evaluate retrievers on MTRAG per domain: last turn, history, human and LLM rewrites, DiSCo students.

    python -m jobs.evaluate_mtrag --config jobs/configs/evaluate_mtrag.yaml
    python -m jobs.evaluate_mtrag --config jobs/configs/evaluate_mtrag_mtragun.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.evaluate_mtrag --config jobs/configs/evaluate_mtrag.yaml
"""
from rayrag.cli import job_main

if __name__ == "__main__":
    job_main(__file__)
