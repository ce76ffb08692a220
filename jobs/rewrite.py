"""Write standalone rewrites of conversational turns (DiSCo teachers) with an LLM.

    python -m jobs.rewrite --config jobs/configs/rewrite_mtrag_smollm2.yaml
    python -m jobs.rewrite --config jobs/configs/rewrite_mtrag_smollm2.yaml domains=[govt] limit=40 output_dir=out/rewrite/govt40
    python -m jobs.rewrite model=null endpoint=http://127.0.0.1:8000/v1 endpoint_model=my-llm api_key_env=LLM_API_KEY output_dir=out/rewrite/mtrag-llm
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.rewrite --config jobs/configs/rewrite_mtrag_smollm2.yaml gpus_per_actor=1 batch_size=64
"""
from rayrag.cli import job_main

if __name__ == "__main__":
    job_main(__file__)
