"""The fair baseline for Serve's cost: the same ``SearchEngine`` behind a plain ASGI app.

One uvicorn process, FastAPI, the same request and response schemas as the served
``/search`` (``SearchRequest`` -> ``SearchResponse``), the same index, query model and torch
threads as one Retriever replica, access log off. Searches run on a pool of ``--model-threads``
threads (default: one per core): FastAPI's default for a plain ``def`` route, a 40-thread pool,
runs all 16 requests of a c=16 load at once, and on 2 cores that contention costs 40% of the
throughput (bench/README.md, run 10). ``/bench/noop-search`` validates the same
body and answers with no model work: the framework's own ceiling on this machine.

    python bench/asgi_baseline.py --index out/quickstart/index-flat --port 18100
"""
# no `from __future__ import annotations`: FastAPI must see the route signatures' real types
import argparse
import os


def make_app(index: str, threads: int, model_threads: int, query_model: str | None = None):
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from fastapi import FastAPI

    from rayrag.serve.config import ServeConfig
    from rayrag.serve.engine import SearchEngine
    from rayrag.serve.schemas import SearchHit, SearchRequest, SearchResponse

    torch.set_num_threads(threads)
    cfg = ServeConfig(index=index, query_model=query_model)
    engine = SearchEngine(cfg)
    pool = ThreadPoolExecutor(model_threads, thread_name_prefix="engine")
    app = FastAPI()

    def answer(body: SearchRequest, hits: list[tuple[str, float]]) -> SearchResponse:
        docs = engine.passages
        return SearchResponse(query=body.query, k=body.k or cfg.default_k, reranked=False, model=engine.model_name,
                              reranker=None, results=[
                                  SearchHit(rank=i + 1, id=d, score=s, stage="retriever", retriever_score=s,
                                            title=docs[d].title, text=docs[d].text) for i, (d, s) in enumerate(hits)])

    @app.post("/search", response_model=SearchResponse)
    async def search(body: SearchRequest) -> SearchResponse:
        k = body.k or cfg.default_k
        hits = await asyncio.get_running_loop().run_in_executor(pool, lambda: engine.search([body.query], k)[0])
        return answer(body, hits)

    @app.post("/bench/noop-search", response_model=SearchResponse)
    async def noop_search(body: SearchRequest) -> SearchResponse:
        return answer(body, [])

    @app.get("/readyz")
    async def readyz() -> dict:
        return {"status": "ready"}

    return app


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True)
    ap.add_argument("--port", type=int, default=18100)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a Retriever replica's torch_threads)")
    ap.add_argument("--model-threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="searches running at once (default: one per core it may run on)")
    ap.add_argument("--query-model", default=None,
                    help="the query encoder (default: the index's; serve's `query_model`)")
    args = ap.parse_args()
    if args.threads < 1 or args.model_threads < 1:
        ap.error("--threads and --model-threads must be >= 1")
    app = make_app(args.index, args.threads, args.model_threads, args.query_model)
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
