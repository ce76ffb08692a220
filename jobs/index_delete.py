"""Delete documents from a sharded index; search filters them when it merges the shards.

    python -m jobs.index_delete index=out/index-sharded ids=deleted-ids.txt
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.index_delete index=out/index-sharded ids=deleted-ids.txt
"""
from rayrag.cli import job_main

if __name__ == "__main__":
    job_main(__file__)
