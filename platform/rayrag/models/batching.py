"""Length-sorted batching: padding only to the longest text of similar-length neighbours."""
from __future__ import annotations

import sys
from typing import Callable, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm


def progress_bar(it, desc: str | None):
    """A tqdm over batches, shown when ``desc`` is given."""
    # Off a terminal (Ray worker logs, CI) every redraw is a new log line: redraw rarely.
    return tqdm(it, desc=desc, unit="batch", disable=desc is None, mininterval=0.1 if sys.stderr.isatty() else 15.0)


def length_sorted_batches(texts: Sequence[str], batch_size: int, desc: str | None = None,
                          progress: bool = True) -> Iterator[tuple[np.ndarray, list[str]]]:
    """Yield ``(original_positions, texts)`` batches, longest first.

    Longest first so that an out-of-memory batch fails at the start, not after an hour.
    Character length is a good enough proxy for token length to sort by, and avoids
    tokenizing everything twice (token id lists sort by their exact length).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.argsort([-len(t) for t in texts], kind="stable")
    for s in progress_bar(range(0, len(order), batch_size), desc if progress else None):
        idx = order[s:s + batch_size]
        yield idx, [texts[i] for i in idx]


def encode_in_order(texts: Sequence[str], batch_size: int, fn: Callable[[list[str]], np.ndarray],
                    dim: int, desc: str | None, progress: bool = True) -> np.ndarray:
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for idx, batch in length_sorted_batches(texts, batch_size, desc, progress):
        out[idx] = fn(batch)
    return out
