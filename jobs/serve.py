"""Serve the retriever + reranker over HTTP (Ray Serve). See docs/SERVE.md.

    python -m jobs.serve run --config jobs/configs/serve/scifact.yaml [key=value ...]
    python -m jobs.serve build --config jobs/configs/serve/scifact.yaml --output jobs/configs/serve/scifact.yaml
"""
import sys

from rayrag.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
