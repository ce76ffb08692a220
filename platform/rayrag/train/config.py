"""Config of the training jobs (dense bi-encoders, cross-encoder and LLM rerankers, sparse query encoders)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from .objectives.registry import ObjectiveSpec, get_objective, import_objective_modules

SCHEDULES = ("linear", "cosine", "constant")
REGULARISERS = ("flops", "l1", "none")


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class TrainEvalConfig:
    """End-of-epoch evaluation on rank 0 (never used to pick checkpoints)."""
    split: str | None = "dev"  # None: no evaluation during training; test is for the final report
    every_epochs: int = 1
    before_training: bool = False  # also evaluate the untrained model: the baseline in the same run
    metric: str = "ndcg@10"
    first_stage: str = "bm25"  # rerankers: what retrieves the candidates they re-score
    rerank_depth: int = 100
    max_queries: int | None = None  # cap for quick looks; None = every query of the split


@dataclass
class DiscoConfig:
    """DiSCo (train-sparse, objective disco): distil rewrites' score distributions into a SPLADE
    query encoder that reads the whole conversation; the document encoder stays frozen."""
    teachers: list[str] = field(default_factory=lambda: ["human"])  # keys of the examples' teacher_scores
    teacher_weights: list[float] | None = None  # merge weights, one per teacher; None = equal
    kl_weight: float = 0.99
    contrastive_weight: float = 0.01
    temperature: float = 1.0  # divides teacher and student scores alike
    # multiplies the student's scores in the loss only (rankings unchanged): see losses/disco.py
    student_scale: float = 1.0
    reg: str = "flops"  # sparsity regulariser on the query representations: flops | l1 | none
    # Of the order of SPLADE's query-side weights; the MTRAG recipe (train_mtrag_disco.yaml) chose 5e-2 on its holdout.
    reg_weight: float = 5.0e-4
    reg_warmup_steps: int = 0  # the weight grows quadratically from 0 over these optimizer steps
    max_candidates: int | None = None  # per turn: its positives, then the teachers' favourites
    # held-out turns (the same format, other conversations) for in-training evaluation; training
    # drops turns of these conversations. eval.split is not used by train-sparse.
    eval_examples: str | None = None
    # The frozen document side read from the pool's SPLADE indexes (folders, {domain} per example's
    # domain) instead of re-encoding candidates each step (train/doc_reps.py); null: re-encode.
    doc_index: str | None = None

    def validate(self) -> None:
        if not self.teachers or len(set(self.teachers)) != len(self.teachers):
            raise ConfigError(f"disco.teachers must be a non-empty list of distinct names, got {self.teachers}")
        if self.teacher_weights is not None and (
                len(self.teacher_weights) != len(self.teachers) or any(w < 0 for w in self.teacher_weights)
                or sum(self.teacher_weights) <= 0):
            raise ConfigError(f"disco.teacher_weights must be {len(self.teachers)} non-negative numbers (one per "
                              f"teacher), not all 0; got {self.teacher_weights}")
        if self.kl_weight < 0 or self.contrastive_weight < 0 or self.kl_weight + self.contrastive_weight <= 0:
            raise ConfigError("disco.kl_weight and disco.contrastive_weight must be >= 0, not both 0")
        if self.temperature <= 0:
            raise ConfigError(f"disco.temperature must be > 0, got {self.temperature}")
        if self.student_scale <= 0:
            raise ConfigError(f"disco.student_scale must be > 0, got {self.student_scale}")
        if self.reg not in REGULARISERS:
            raise ConfigError(f"disco.reg must be one of {REGULARISERS}, got {self.reg!r}")
        if self.reg_weight < 0 or self.reg_warmup_steps < 0:
            raise ConfigError("disco.reg_weight and disco.reg_warmup_steps must be >= 0")
        if self.max_candidates is not None and self.max_candidates < 2:
            raise ConfigError(f"disco.max_candidates must be >= 2 (or null for all), got {self.max_candidates}")


@dataclass
class LremConfig:
    """LREM (train-reasoning): a causal LM that writes keywords after ``<think>`` and embeds at
    ``<emb>`` (models/reasoning.py). Objectives: lrem-direct (no reasoning, the baseline),
    lrem-sft (stage 1: CoT SFT + InfoNCE), lrem-grpo (stage 2: GRPO + InfoNCE)."""
    max_cot_tokens: int = 16  # the length reward's limit and the longest teacher CoT trained on
    max_new_tokens: int = 24  # generation budget (past the limit, so the length reward can bite)
    sft_weight: float = 0.1  # stage 1: sft_weight * L_SFT + infonce_weight * InfoNCE (paper: 0.1, 1.0)
    infonce_weight: float = 1.0  # stage 1; stage 2 uses rl_infonce_weight
    thought_dropout: float = 0.0  # stage 1: share of queries trained with an empty CoT
    # stage 2 (GRPO)
    num_samples: int = 8  # G CoTs per query
    sample_temperature: float = 1.0
    clip_eps: float = 0.2
    pg_weight: float = 1.0  # 0 switches the policy gradient off (the "InfoNCE only" control arm)
    rl_infonce_weight: float = 0.1  # L2 = L_GRPO + 0.1 * InfoNCE (paper)
    # candidates the reward ranks the positive among: the micro-batch's items (positives and
    # mined negatives of every query in it) plus this many corpus passages drawn per step
    corpus_candidates: int = 0
    # and each query's next mined negatives (among the first negatives_from_top, not in its
    # group): candidates as hard as its own negatives, which random passages rarely are
    hard_candidates: int = 0
    # and this many corpus passages embedded once every cache_refresh_steps optimizer steps (and
    # at each epoch's start) with the current weights: a pool near the corpus's size at the cost
    # of a few per-step draws, its embeddings at most cache_refresh_steps steps stale
    corpus_cache: int = 0
    cache_refresh_steps: int = 20
    reward_weights: dict[str, float] = field(default_factory=lambda: {"format": 0.5, "length": 0.2, "acc": 1.0})
    sample_log_every_epochs: int = 1  # a text artifact of sampled CoTs every n epochs

    def validate(self) -> None:
        if not 1 <= self.max_cot_tokens <= self.max_new_tokens:
            raise ConfigError(f"lrem: need 1 <= max_cot_tokens <= max_new_tokens, got {self.max_cot_tokens}, "
                              f"{self.max_new_tokens}")
        for name in ("sft_weight", "infonce_weight", "pg_weight", "rl_infonce_weight", "corpus_candidates",
                     "hard_candidates", "corpus_cache"):
            if getattr(self, name) < 0:
                raise ConfigError(f"lrem.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.thought_dropout < 1:
            raise ConfigError(f"lrem.thought_dropout must be in [0, 1), got {self.thought_dropout}")
        if self.num_samples < 2:
            raise ConfigError(f"lrem.num_samples must be >= 2 (GRPO compares samples of one query), "
                              f"got {self.num_samples}")
        if self.sample_temperature <= 0 or not 0 < self.clip_eps < 1:
            raise ConfigError("lrem.sample_temperature must be > 0 and lrem.clip_eps in (0, 1)")
        if set(self.reward_weights) != {"format", "length", "acc"} or any(w < 0 for w in self.reward_weights.values()):
            raise ConfigError(f"lrem.reward_weights needs format, length and acc, each >= 0; got {self.reward_weights}")
        if self.sample_log_every_epochs < 1:
            raise ConfigError("lrem.sample_log_every_epochs must be >= 1")
        if self.cache_refresh_steps < 1:
            raise ConfigError(f"lrem.cache_refresh_steps must be >= 1, got {self.cache_refresh_steps}")


@dataclass
class TrainConfig:
    objective: str = "infonce"  # a registered objective (train/objectives/registry.py)
    # modules that register further objectives (`rayrag.train.objectives.register`), imported
    # before the name is looked up; the job ships their top-level packages to the Ray workers
    objective_modules: list[str] = field(default_factory=list)
    model: str = "minilm"  # built-in name, folder or HF id
    examples: str = "out/mine/scifact-train-bm25.jsonl"  # from the mine job
    dataset: str = "scifact"  # its corpus gives the documents' text
    # examples of this split's queries are dropped, never trained on (dev: data/splits.py);
    # null trains on every example (a final model on train_all, once settings are chosen on dev)
    holdout: str | None = "dev"
    data_dir: str | None = None
    output_dir: str = "out/train/minilm"
    # scale
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    # DeepSpeed engine
    zero_stage: int = 0
    bf16: bool = False  # bf16 where supported (CPU and Ampere+ GPUs); fp16 is not offered
    # optimisation
    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    batch_size: int = 16  # queries per worker per micro-batch
    grad_accum: int = 1
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    schedule: str = "linear"
    max_grad_norm: float | None = 1.0
    seed: int = 42
    # examples -> batches
    group_size: int = 4  # documents per query: 1 positive + (group_size - 1) mined negatives
    negatives_from_top: int = 32  # sample the negatives among the first n mined
    temperature: float = 0.05  # InfoNCE / LCE logits scale 1/temperature
    gather_negatives: bool = True  # InfoNCE: every worker's documents are negatives for every query
    query_max_length: int = 64
    doc_max_length: int = 256  # training truncation (documents; query + document for rerankers)
    inference_max_length: int | None = None  # exported model and evaluation; None = doc_max_length
    # models
    pooling: str | None = None  # dense: mean | cls | last; None = the model's default
    # last-token pooling: true pools an appended EOS, false each text's own last token; None = the
    # model's own (an exported embedder's saved choice, so training it further keeps it; EOS for a raw LM)
    append_eos: bool | None = None
    query_prefix: str = ""  # e.g. an instruction for LLM embedders
    doc_prefix: str = ""
    gradient_checkpointing: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)
    # checkpoints, logging, tracking
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0 = only at epoch ends
    keep_checkpoints: int = 2
    max_failures: int = 1  # worker failures survived by restoring the last checkpoint
    log_every: int = 10  # optimizer steps between MLflow metric logs (rank 0)
    storage_path: str | None = None  # Ray Train storage; default <output_dir>/ray
    register_as: str | None = None  # MLflow registered model name; None = no registration
    experiment: str = "rayrag"
    eval: TrainEvalConfig = field(default_factory=TrainEvalConfig)
    disco: DiscoConfig = field(default_factory=DiscoConfig)  # train-sparse only
    lrem: LremConfig = field(default_factory=LremConfig)  # train-reasoning only

    @property
    def max_length(self) -> int:
        """Truncation at inference: training can use shorter texts than the model then serves."""
        return self.inference_max_length or self.doc_max_length

    @property
    def spec(self) -> ObjectiveSpec:
        return get_objective(self.objective)

    @property
    def kind(self) -> str:
        return self.spec.kind

    def validate(self) -> None:
        import_objective_modules(self.objective_modules)
        spec = self.spec  # an unknown objective fails here
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ConfigError(f"zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        for name in ("num_workers", "epochs", "batch_size", "grad_accum", "query_max_length",
                     "doc_max_length", "log_every", "keep_checkpoints", "negatives_from_top"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.checkpoint_every < 0 or self.max_failures < 0:
            raise ConfigError("checkpoint_every and max_failures must be >= 0")
        if spec.min_group_size == spec.max_group_size != self.group_size:
            raise ConfigError(f"objective {self.objective!r} takes exactly {spec.min_group_size} documents per "
                              f"query: set group_size={spec.min_group_size}")
        if self.group_size < spec.min_group_size:
            why = f" (a positive and {spec.min_group_size - 1} negative(s))" if spec.min_group_size > 1 else ""
            raise ConfigError(f"group_size must be >= {spec.min_group_size} for objective "
                              f"{self.objective!r}{why}, got {self.group_size}")
        if spec.max_group_size is not None and self.group_size > spec.max_group_size:
            raise ConfigError(f"group_size must be <= {spec.max_group_size} for objective {self.objective!r}, "
                              f"got {self.group_size}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lr <= 0 or self.temperature <= 0 or self.cpus_per_worker <= 0:
            raise ConfigError("lr, temperature and cpus_per_worker must be > 0")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError("max_grad_norm must be > 0 (or null for no clipping)")
        if self.lora.enabled and self.kind == "cross":
            raise ConfigError("LoRA is for LLM embedders and LLM rerankers; train cross-encoders fully")
        if self.inference_max_length is not None and self.inference_max_length < 1:
            raise ConfigError("inference_max_length must be >= 1")
        if self.eval.every_epochs < 1 or self.eval.rerank_depth < 1:
            raise ConfigError("eval.every_epochs and eval.rerank_depth must be >= 1")
        if not self.output_dir:
            raise ConfigError("output_dir must not be empty")
        if self.lrem.corpus_cache and self.checkpoint_every % self.lrem.cache_refresh_steps:
            # a resume re-embeds the cache with the checkpoint's weights: the same cache as the
            # uninterrupted run only when the checkpoint falls on a refresh
            raise ConfigError(f"checkpoint_every ({self.checkpoint_every}) must be a multiple of "
                              f"lrem.cache_refresh_steps ({self.lrem.cache_refresh_steps}) when lrem.corpus_cache "
                              f"is on, so that a resumed run re-embeds the same cache")
