"""Serving: retriever + reranker as Ray Serve deployments behind a FastAPI HTTP API.

``config`` (ServeConfig), ``engine`` (the model work, no Ray), ``deployments`` (batched Serve
replicas), ``app`` (ingress + application builder), ``schemas``, ``errors``, ``auth``,
``artifacts`` (local / MLflow loading, no pickles), ``serve_yaml`` (the Serve config file),
``cli`` (``rayrag serve``). See docs/SERVE.md.
"""
