"""serve/batching.py's DrainBatcher, the deployments' batcher: a call to an idle batcher runs at
once, calls that arrive while a batch runs form the next batch (up to max_batch_size, in
arrival order), each caller gets its own result, a batch shares one fate. Batch boundaries are
made deterministic by holding the running batch on an event, not by timing."""
from __future__ import annotations

import asyncio

import pytest

from rayrag.serve.batching import DrainBatcher


class Model:
    """A batch function that records its batches and runs each until ``release`` is set."""

    def __init__(self):
        self.batches: list[list] = []
        self.release = asyncio.Event()
        self.running = asyncio.Event()

    async def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        self.running.set()
        await self.release.wait()
        if "bad" in items:
            raise ValueError("a bad item")
        return [x * 10 for x in items]


def test_an_idle_call_runs_alone_and_later_calls_form_the_next_batches():
    async def go():
        model = Model()
        b = DrainBatcher(model, max_batch_size=4)
        first = asyncio.ensure_future(b(0))
        await model.running.wait()  # item 0 runs alone: nothing made it wait for company
        rest = [asyncio.ensure_future(b(i)) for i in range(1, 10)]
        await asyncio.sleep(0.01)
        assert model.batches == [[0]]  # the others wait for the running batch
        model.release.set()
        return await first, await asyncio.gather(*rest), model.batches, (b.batches, b.items)

    first, rest, batches, counts = asyncio.run(go())
    assert first == 0 and rest == [10 * i for i in range(1, 10)]
    assert batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]] and counts == (4, 10)


def test_a_failing_batch_fails_its_own_calls_only():
    async def go():
        model = Model()
        model.release.set()
        b = DrainBatcher(model, max_batch_size=2)
        return await asyncio.gather(b("bad"), b(1), b(2), b(3), return_exceptions=True), model.batches

    results, batches = asyncio.run(go())
    assert batches == [["bad", 1], [2, 3]]
    assert [type(r) for r in results[:2]] == [ValueError, ValueError] and results[2:] == [20, 30]


def test_a_cancelled_caller_costs_no_model_work():
    async def go():
        model = Model()
        b = DrainBatcher(model, max_batch_size=8)
        first = asyncio.ensure_future(b(0))
        await model.running.wait()
        gone, kept = asyncio.ensure_future(b(1)), asyncio.ensure_future(b(2))
        await asyncio.sleep(0)
        gone.cancel()  # its client went away while it waited
        model.release.set()
        return await first, await kept, gone.cancelled(), model.batches

    first, kept, cancelled, batches = asyncio.run(go())
    assert (first, kept, cancelled) == (0, 20, True) and batches == [[0], [2]]


def test_settings_change_between_batches_and_a_wait_gathers_company():
    async def go():
        model = Model()
        model.release.set()
        b = DrainBatcher(model, max_batch_size=16)
        b.max_batch_size, b.wait_s = 3, 0.5  # as reconfigure sets them
        first = asyncio.ensure_future(b(0))
        await asyncio.sleep(0.05)  # well inside the wait: these join the first batch
        out = await asyncio.gather(first, *(b(i) for i in range(1, 5)))
        return out, model.batches

    out, batches = asyncio.run(go())
    assert out == [0, 10, 20, 30, 40] and batches == [[0, 1, 2], [3, 4]]


def test_a_wrong_result_count_or_a_cancelled_batch_leaves_no_caller_waiting():
    async def short(items):
        return items[:-1]

    async def go_short():
        return await asyncio.gather(*(DrainBatcher(short)(i) for i in range(1)), return_exceptions=True)

    [err] = asyncio.run(go_short())
    assert isinstance(err, RuntimeError) and "0 results for 1 items" in str(err)

    async def go_cancel():
        model = Model()
        b = DrainBatcher(model, max_batch_size=1)
        call = asyncio.ensure_future(b(0))
        await model.running.wait()
        queued = asyncio.ensure_future(b(1))
        await asyncio.sleep(0)
        b._worker.cancel()  # the replica stops under a running batch, with a call queued behind it
        with pytest.raises(RuntimeError, match="cancelled"):
            await call
        with pytest.raises(RuntimeError, match="stopped"):
            await queued

    asyncio.run(go_cancel())

    async def go_cancel_while_waiting():
        b = DrainBatcher(Model(), wait_s=10)
        call = asyncio.ensure_future(b(0))
        await asyncio.sleep(0.01)
        b._worker.cancel()  # stopped during the wait for company, before any batch ran
        with pytest.raises(RuntimeError, match="stopped"):
            await call

    asyncio.run(go_cancel_while_waiting())


@pytest.mark.parametrize("user_config", [{"max_batch_size": 0}, {"max_batch_size": 0.5},
                                         {"batch_wait_timeout_s": -1}, {"torch_threads": 0},
                                         {"max_batch_size": True}, {"batch_wait_timeout_s": True}])
def test_bad_batching_settings_fail_the_reconfigure(user_config):
    """`serve deploy` hands user_config to the replica without rayrag's config checks: a batch
    size of 0 would make the batcher spin, so the deployments refuse it with the reason."""
    from rayrag.serve.deployments import _set_batching

    b = DrainBatcher(Model(), max_batch_size=4)
    with pytest.raises(ValueError, match="max_batch_size >= 1"):
        _set_batching([b], {"max_batch_size": 16, **user_config})
    assert (b.max_batch_size, b.wait_s) == (4, 0.0)  # nothing applied
