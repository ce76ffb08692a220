"""Synthetic but well-formed DiSCo examples (the teacher-scoring job's format) for fast tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TOPICS = ["aspirin and stroke risk", "solar panels on flat roofs", "tax deductions for home offices",
          "training a puppy to sit", "the history of the printing press", "python list comprehensions",
          "symptoms of vitamin d deficiency", "renewing a passport abroad"]


def turn(conv: int, t: int, n_docs: int, rng: np.random.Generator, teachers=("human", "llm")) -> dict:
    topic = TOPICS[conv % len(TOPICS)]
    history = [f"|user|: tell me about {topic}"] + [f"|user|: what else about part {i}?" for i in range(1, t + 1)]
    docs = [{"id": f"c{conv}-d{j}", "text": f"{topic} passage {j}: " + " ".join(TOPICS[(conv + j) % 8].split()[:3])}
            for j in range(n_docs)]
    positives = [docs[t % n_docs]["id"]] + ([docs[(t + 1) % n_docs]["id"]] if t % 2 else [])
    scores = {k: [round(float(x), 4) for x in rng.normal(size=n_docs) + 3.0 * np.isin(
        [d["id"] for d in docs], positives)] for k in teachers}
    return {"query_id": f"conv{conv}::{t + 1}", "conversation_id": f"conv{conv}", "domain": "test",
            "query": "\n".join(history), "docs": docs, "positives": positives, "teacher_scores": scores,
            "teacher_queries": {k: f"{topic}, part {t}" for k in teachers}}


def write_examples(path: Path, convs: range, turns: int = 3, seed: int = 0) -> Path:
    """``turns`` turns per conversation; candidates per turn vary (4 to 6), as real pools do."""
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        for c in convs:
            for t in range(turns):
                f.write(json.dumps(turn(c, t, 4 + (c + t) % 3, rng)) + "\n")
    return path
