"""Write a keyword chain of thought per training query (LREM stage-1 data).

    python -m jobs.cot --config jobs/configs/cot_scifact_oracle.yaml [key=value ...]
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.cot --config jobs/configs/cot_scifact_oracle.yaml
"""
from rayrag.cli import job_main

if __name__ == "__main__":
    job_main(__file__)
