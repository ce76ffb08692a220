"""Write DiSCo training examples: per MTRAG turn, candidates and every teacher's SPLADE scores.

    python -m jobs.teacher_scores --config jobs/configs/teacher_scores_mtrag.yaml
    python -m jobs.teacher_scores --config jobs/configs/teacher_scores_mtrag.yaml fold=all holdout=none --output-dir out/disco/all
    python -m jobs.teacher_scores --config jobs/configs/teacher_scores_mtrag.yaml teachers=[human,smollm2-135m=out/rewrite/mtrag-smollm2]
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.teacher_scores --config jobs/configs/teacher_scores_mtrag.yaml
"""
from rayrag.cli import job_main

if __name__ == "__main__":
    job_main(__file__)
