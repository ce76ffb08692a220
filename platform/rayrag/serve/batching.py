"""Request batching for the model deployments: the next batch forms when the running one ends.

Ray Serve's ``@serve.batch`` (2.60) closes a batch when ``batch_wait_timeout_s`` has passed since
its first request, and only then waits for the running batch to end (its
``max_concurrent_batches`` semaphore is taken after the batch is formed). So a wait timer is what
fills its batches under load, and every lone request pays that timer: with the shipped 2 ms the
sequential overhead was 7.3 ms, and with no wait c=16 throughput fell by 31% (docs/SERVE.md,
"Paired overhead"). Here a call to an idle batcher runs at once, and calls that arrive while a
batch runs wait for it and go together in the next one, up to ``max_batch_size``: no timer at
low load, batches as large as the load makes them under it. ``wait_s`` (0 by default) adds a
wait after the first call of an idle batcher, for a model whose batches are so cheap per extra
item (a GPU) that fuller batches pay for the wait.

One batch at a time, in arrival order. A batch shares one fate: an exception fails each of its
calls (so callers check their input before they join). A caller that is cancelled (its client
went away) before its batch forms costs no model work. Pure asyncio, no Ray: the bench and a
Ray-less GPU image use the same class.
"""
from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from typing import Any, Awaitable, Callable


class DrainBatcher:
    """``await batcher(item)`` -> ``fn([items...])[i]`` for that item.

    ``fn`` is async, takes a list of items and returns one result per item, in order.
    ``max_batch_size`` and ``wait_s`` may be changed at any time (a deployment's ``reconfigure``);
    the next batch uses them. ``batches`` and ``items`` count what ran (stats and the bench)."""

    def __init__(self, fn: Callable[[list], Awaitable[list]], max_batch_size: int = 16, wait_s: float = 0.0):
        self._fn = fn
        self.max_batch_size, self.wait_s = max_batch_size, wait_s
        self._pending: deque[tuple[Any, asyncio.Future]] = deque()
        self._worker: asyncio.Task | None = None
        self.batches = self.items = 0

    def stats(self) -> dict:
        """What ran so far (a replica's readiness details): batches, requests, their ratio."""
        return {"batches": self.batches, "requests": self.items,
                "mean_batch_size": round(self.items / self.batches, 2) if self.batches else None}

    async def __call__(self, item: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._worker is None or self._worker.done():
            # an empty context: the batch belongs to no single caller's request (its log context);
            # Context.run rather than create_task(context=...), which needs Python 3.11
            self._worker = contextvars.Context().run(asyncio.get_running_loop().create_task, self._drain())
        return await fut

    async def _drain(self) -> None:
        # No await separates the last empty check of ``_pending`` from this task ending, so a call
        # either finds the worker running (and is taken by this loop) or done (and starts one).
        batch: list[tuple[Any, asyncio.Future]] = []
        try:
            if self.wait_s > 0 and len(self._pending) < self.max_batch_size:
                await asyncio.sleep(self.wait_s)
            while self._pending:
                batch = []
                while self._pending and len(batch) < self.max_batch_size:
                    item, fut = self._pending.popleft()
                    if not fut.done():  # done before its batch: its caller was cancelled
                        batch.append((item, fut))
                if batch:
                    await self._run(batch)
        except BaseException:  # the worker itself cancelled (the replica stops): nobody waits forever
            _fail(batch, RuntimeError("the batch was cancelled"))
            _fail(self._pending, RuntimeError("the batcher was stopped"))
            self._pending.clear()
            raise

    async def _run(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = await self._fn([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
        except Exception as e:  # one fate per batch
            _fail(batch, e)
            return
        for (_, fut), result in zip(batch, results):
            if not fut.done():
                fut.set_result(result)


def _fail(calls, error: BaseException) -> None:
    for _, fut in calls:
        if not fut.done():
            fut.set_exception(error)
