"""Config of the Serve application: what to load, request limits, access, and deployment sizes.

The same dataclass is the ``args:`` block of the Serve config YAML (``jobs/configs/serve/``),
so ``serve run``/``serve deploy``/KubeRay and ``rayrag serve run`` read one definition.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

REF_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")
# What the retriever loads for one index: its ``user_config`` carries these, so changing them is
# a lightweight update (``reconfigure`` swaps the index in place, docs/SERVE.md). In the Serve
# YAML they sit there and not in ``args``: ``serve deploy`` rebuilds the whole application and
# restarts every replica whenever ``args`` change (Serve's code version is a hash of them).
INDEX_FIELDS = ("index", "corpus", "query_model", "model_name", "max_query_tokens", "reasoning",
                "reasoning_margin", "messages_with_assistant", "shard_actor_cpus")


@dataclass
class Limits:
    """Request limits: anything beyond them is a 4xx, never work for the replicas."""
    max_query_chars: int = 2000
    max_k: int = 100
    max_rerank_k: int = 100  # candidates one /search may send to the reranker
    max_embedding_inputs: int = 64  # inputs per /v1/embeddings call
    max_input_chars: int = 8000  # per embeddings input and per rerank document
    max_rerank_documents: int = 100  # documents per /v1/rerank call
    # /search with a chat history: MTRAG conversations reach ~7,600 characters in all and
    # single answers a few thousand, so these leave room for real conversations. The text
    # searched is still cut to the query encoder's token budget, oldest turns first.
    max_messages: int = 64
    max_message_chars: int = 8000
    max_conversation_chars: int = 32000

    def validate(self) -> None:
        for name, value in vars(self).items():
            if value < 1:
                raise ConfigError(f"limits.{name} must be >= 1, got {value}")

    def largest_body_bytes(self) -> int:
        """The largest request body these limits admit: its characters (the largest of the three
        bodies) at 12 bytes each, what a non-BMP character takes \\u-escaped as a surrogate pair
        (Python's json.dumps default), plus 64 KiB for keys, brackets and whitespace."""
        chars = max(self.max_query_chars, self.max_conversation_chars, self.max_embedding_inputs * self.max_input_chars,
                    self.max_query_chars + self.max_rerank_documents * self.max_input_chars)
        return 12 * chars + 65536


@dataclass
class Admission:
    """What one ingress replica takes in: beyond this a request is answered at once, before it is
    parsed or reaches a model (``admission.py``), so overload, huge bodies and slow clients cost
    the server a bounded amount and it keeps answering the requests it admitted."""
    # API calls in progress per ingress replica (probes excluded); one more gets 503 `overloaded`
    # with Retry-After. Below ingress.max_ongoing_requests, or Serve queues requests the gate never sees.
    max_concurrent_requests: int = 64
    retry_after_s: int = 1
    max_body_bytes: int | None = None  # larger: 413 `too_large`; None: limits.largest_body_bytes()
    body_timeout_s: float = 10.0  # a body not complete by then: 408 `body_timeout`, its slot freed

    def body_limit(self, limits: Limits) -> int:
        return limits.largest_body_bytes() if self.max_body_bytes is None else self.max_body_bytes

    def check(self, ingress_ongoing: int) -> None:
        if not 1 <= self.max_concurrent_requests < ingress_ongoing:
            raise ConfigError(f"admission.max_concurrent_requests must be in [1, ingress.max_ongoing_requests="
                              f"{ingress_ongoing}), got {self.max_concurrent_requests}: Serve holds back requests "
                              f"beyond max_ongoing_requests before the ingress can answer them")
        if self.retry_after_s < 1 or self.body_timeout_s <= 0 or (self.max_body_bytes is not None
                                                                  and self.max_body_bytes < 1):
            raise ConfigError("admission: retry_after_s >= 1, body_timeout_s > 0 and max_body_bytes >= 1 are required")


@dataclass
class Auth:
    """Bearer key. The first of the file and the environment variable that holds a key wins.

    Fails closed: bound to anything but loopback, the server refuses to start without a key
    unless ``allow_anonymous`` says that an open API is meant (no shipped config sets it)."""
    api_key_env: str | None = "RAYRAG_API_KEY"  # name of the variable, not the key
    api_key_file: str | None = None  # e.g. a mounted Kubernetes Secret
    required: bool = False  # refuse to start without a key, even on loopback
    allow_anonymous: bool = False  # serve without a key on a non-loopback address, on purpose


@dataclass
class Autoscaling:
    min_replicas: int = 1
    max_replicas: int = 2
    target_ongoing_requests: float = 16.0  # per replica; batching wants a queue, so not Serve's default 2


@dataclass
class DeploymentParams:
    num_cpus: float = 0.5  # fractional: on a 2-core node three 1-CPU replicas would never schedule
    num_replicas: int = 1  # ignored when autoscaling is set
    autoscaling: Autoscaling | None = None
    max_ongoing_requests: int = 64  # must exceed max_batch_size, or batches never fill
    max_batch_size: int = 16  # 1 turns batching off
    # Batches form when the running one ends (serve/batching.py), so no timer is needed to fill
    # them under load; >0 makes a request to an idle replica wait this long for company.
    batch_wait_timeout_s: float = 0.0
    torch_threads: int = 1
    # Serve writes one INFO line per call; on the model deployments that duplicates the ingress's
    # line for the same request and, on a small node, costs CPU the models need (bench/README.md).
    access_log: bool = False

    def check(self, name: str) -> None:
        if self.num_cpus < 0 or self.num_replicas < 1 or self.max_ongoing_requests < 1:
            raise ConfigError(f"{name}: num_cpus >= 0, num_replicas >= 1 and max_ongoing_requests >= 1 are required")
        if self.max_batch_size < 1 or self.batch_wait_timeout_s < 0 or self.torch_threads < 1:
            raise ConfigError(f"{name}: max_batch_size >= 1, batch_wait_timeout_s >= 0, torch_threads >= 1 are required")
        a = self.autoscaling
        if a is not None and not (0 <= a.min_replicas <= a.max_replicas and a.max_replicas >= 1
                                  and a.target_ongoing_requests > 0):
            raise ConfigError(f"{name}.autoscaling: need 0 <= min_replicas <= max_replicas, max_replicas >= 1, "
                              f"target_ongoing_requests > 0")

    def serve_options(self) -> dict:
        """Options in the form Serve's ``.options()`` and the Serve config YAML take."""
        out: dict = {}
        if self.autoscaling is None:
            out["num_replicas"] = self.num_replicas
        else:
            a = self.autoscaling
            out["autoscaling_config"] = {"min_replicas": a.min_replicas, "max_replicas": a.max_replicas,
                                         "target_ongoing_requests": a.target_ongoing_requests}
        out["max_ongoing_requests"] = self.max_ongoing_requests
        out["ray_actor_options"] = {"num_cpus": self.num_cpus}
        out["logging_config"] = {"enable_access_log": self.access_log}
        return out

    def batching(self) -> dict:
        """The replica's ``user_config``: applied by ``reconfigure``, no restart needed."""
        return {"max_batch_size": self.max_batch_size, "batch_wait_timeout_s": self.batch_wait_timeout_s,
                "torch_threads": self.torch_threads}


def _ingress_defaults() -> DeploymentParams:
    return DeploymentParams(num_cpus=0.1, max_ongoing_requests=256, max_batch_size=1, batch_wait_timeout_s=0.0,
                            access_log=True)


@dataclass
class ServeConfig:
    # an index folder from the index job, or runs:/<run_id>/index, models:/<name>/<version>
    index: str = "out/quickstart/index-flat"
    # BEIR corpus (.jsonl/.parquet) for passage text; None: the corpus the index manifest names
    corpus: str | None = None
    query_model: str | None = None  # None: the encoder named in the index manifest
    model_name: str | None = None  # name clients use for /v1/embeddings; None: the index's model
    # built-in name, folder, runs:/ or models:/ reference; None: no reranker deployment
    reranker: str | None = None
    reranker_name: str | None = None  # name clients may pass to /v1/rerank; None: the reranker reference
    # Development only: serve a reranker whose scoring head is missing from its checkpoint (a
    # seeded random head: its scores mean nothing). Shipped configs and k8s tests reject it.
    dev_untrained_reranker: bool = False
    reranker_max_length: int | None = None  # None: the reranker's own (256 if unknown)
    rerank_batch_pairs: int = 64  # (query, document) pairs per reranker forward pass
    max_query_tokens: int | None = None  # encoder truncation; None: the model's own
    # An LREM reasoning embedder's index (train-reasoning): on = write a keyword CoT, then embed
    # (the paper); off = embed the query directly; auto = reason only when the direct embedding's
    # top-1 margin in the index is below reasoning_margin. None: on. Refused for other models.
    reasoning: str | None = None
    reasoning_margin: float = 0.02
    # /search with `messages`: keep assistant turns in the query text. Must match how the
    # conversational query encoder (the DiSCo student) was trained; MTRAG's questions have none.
    messages_with_assistant: bool = False
    # A sharded index: None = the retriever replica searches its shards itself (threads); a
    # number = each shard is held and searched by a Ray actor reserving that many CPUs, placed
    # on any node, so the index is bounded by the cluster's memory, not one replica's (the
    # replica keeps the ids and the memory-mapped passages and merges)
    shard_actor_cpus: float | None = None
    # Where the query encoder and index run. False: a Retriever deployment of their own, which
    # the ingress calls through a handle (scales apart from HTTP). True: inside each ingress
    # replica, so /search and /v1/embeddings skip one Ray hop and its serialisation (a third of
    # the CPU spent outside the model; it pays where clients reach the ingress replicas' own
    # ports, not through Serve's proxy: docs/SERVE.md, "Cost per request"). Then the
    # `retriever` section sizes the ingress replicas (CPUs, replicas, autoscaling, batching,
    # torch threads), and the `ingress` section keeps only max_ongoing_requests and access_log.
    # The reranker stays a deployment of its own.
    retriever_in_ingress: bool = False
    default_k: int = 10
    default_rerank_k: int = 20
    load_retry_s: float = 10.0  # a failed load (e.g. MLflow not up yet) is retried; readiness says why
    limits: Limits = field(default_factory=Limits)
    admission: Admission = field(default_factory=Admission)
    auth: Auth = field(default_factory=Auth)
    ingress: DeploymentParams = field(default_factory=_ingress_defaults)
    retriever: DeploymentParams = field(default_factory=DeploymentParams)
    rerank: DeploymentParams = field(default_factory=lambda: DeploymentParams(max_batch_size=8))

    def model_args(self) -> dict:
        """What the model replicas are constructed with: without the sizing, batching, limits,
        admission and auth sections, so changing those (options / user_config) never restarts a replica."""
        from dataclasses import replace

        from ..config import to_dict

        return to_dict(replace(self, limits=Limits(), admission=Admission(), auth=Auth(), ingress=_ingress_defaults(),
                               retriever=DeploymentParams(), rerank=DeploymentParams()))

    def index_settings(self) -> dict:
        """The index section: what a ``reconfigure`` compares and loads (``INDEX_FIELDS``)."""
        return {name: getattr(self, name) for name in INDEX_FIELDS}

    def retriever_user_config(self) -> dict:
        """The Retriever's ``user_config``: batching and the index to serve, both applied in place."""
        return {**self.retriever.batching(), **self.index_settings()}

    def ingress_options(self) -> dict:
        """The ingress deployment's Serve options (and, with the retriever in it, its user_config)."""
        if not self.retriever_in_ingress:
            return self.ingress.serve_options()
        out = self.retriever.serve_options()
        out.update(max_ongoing_requests=self.ingress.max_ongoing_requests,
                   logging_config={"enable_access_log": self.ingress.access_log},
                   user_config=self.retriever_user_config())
        return out

    def validate(self) -> None:
        if not self.index:
            raise ConfigError("index is required: an index folder, runs:/<run_id>/<path> or models:/<name>/<version>")
        self.limits.validate()
        for name in ("ingress", "retriever", "rerank"):
            getattr(self, name).check(name)
        self.admission.check(self.ingress.max_ongoing_requests)
        if not 1 <= self.default_k <= self.limits.max_k:
            raise ConfigError(f"default_k must be in [1, limits.max_k={self.limits.max_k}], got {self.default_k}")
        if not 1 <= self.default_rerank_k <= self.limits.max_rerank_k:
            raise ConfigError(f"default_rerank_k must be in [1, limits.max_rerank_k], got {self.default_rerank_k}")
        if self.reasoning not in (None, "on", "off", "auto"):
            raise ConfigError(f"reasoning must be on, off or auto, got {self.reasoning!r}")
        if self.reasoning_margin < 0:
            raise ConfigError(f"reasoning_margin must be >= 0, got {self.reasoning_margin}")
        if self.shard_actor_cpus is not None and (isinstance(self.shard_actor_cpus, bool)
                                                  or not self.shard_actor_cpus > 0):
            raise ConfigError(f"shard_actor_cpus must be > 0 (or null), got {self.shard_actor_cpus}")
        if self.rerank_batch_pairs < 1 or self.load_retry_s <= 0:
            raise ConfigError("rerank_batch_pairs >= 1 and load_retry_s > 0 are required")
