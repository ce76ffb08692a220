"""The quickstart: SciFact baseline evaluation end to end, printed as a table.

    python -m jobs.quickstart --data-dir ../shared/datasets --output-dir out/quickstart
"""
from rayrag.cli import job_main

if __name__ == "__main__":
    job_main(__file__)
