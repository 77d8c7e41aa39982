"""Micro-batching: requests that arrive together run through the model as one batch.

Batches run on `threads` model threads beside the event loop, a batch a thread.
While every thread is busy, new requests queue; when one is free, the queued
requests (up to `max_batch` texts) form its next batch. A batch waits at most
`max_wait` seconds for company, and only while it is likely to come:

- while other requests are still being read, so that a lone request is not kept
  waiting for company that is not coming;
- while another thread runs a batch and the queue holds less than half this
  thread's share of the texts in the server (`_share`). Clients that each wait
  for their answer come back together, as their batch did; a free thread that took
  the first to return would run a batch of two or three while the rest queued for
  the next, and the split, once made, lasts. Half, not all of it: a thread that
  waited for the last of its share sat idle while they came back (at concurrency
  32, its busy time rose from 1.5 to 1.7 threads of 2 with half, on onnx-int8).

Why several threads: a server's batches are small, and a small batch keeps two
cores busy badly when each of its matrix products is split between them; two
batches of 16 at once, a core each, ran 1.2-1.7x the texts of one on both cores
(`scripts/batch_threads.py`, docs/serving.md). A batch of mixed lengths runs as a few calls of similar lengths
(`length_groups`): padding a batch to its longest text cost more than half the
model's time on Banking77.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

# texts, their context segments -> [len(texts), classes] probabilities
Model = Callable[[list[str], list[str]], np.ndarray]


@dataclass
class _Request:
    texts: list[str]
    contexts: list[str]
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, max_batch: int, max_wait: float, threads: int = 1,
                 on_batch: Callable[[int, float], None] = lambda size, seconds: None):
        self.max_batch, self.max_wait, self.threads, self.on_batch = max_batch, max_wait, threads, on_batch
        self.model: Model | None = None  # set once loaded; until then nothing is submitted
        self._pending: deque[_Request] = deque()
        self._wakeup = asyncio.Event()
        self._arriving = 0
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="sft-model")
        self._free = asyncio.Semaphore(threads)  # model threads without a batch
        self._running: set[asyncio.Task] = set()
        self._queued_texts = self._running_texts = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """After the server has answered what was in flight: end the loop and the model threads."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*self._running, return_exceptions=True)
        self._executor.shutdown(wait=True)

    @contextlib.contextmanager
    def arrival(self):
        """Around reading and checking a request: a batch being formed waits for it."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            self._wakeup.set()

    def submit(self, texts: list[str], contexts: list[str]) -> asyncio.Future:
        """The future of `[len(texts), classes]` probabilities."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(texts, contexts, future))
        self._queued_texts += len(texts)
        self._wakeup.set()
        return future

    async def run_alone(self, fn, *args):
        """`fn(*args)` on a model thread of its own, when one is free (for what is not batched)."""
        async with self._free:
            return await self._on_model_thread(fn, *args)

    async def _on_model_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                await self._woken()
            await self._free.acquire()  # while every thread is busy, the queue grows into the next batch
            deadline = loop.time() + self.max_wait
            while self._running_texts and 2 * self._queued_texts < self._share() and loop.time() < deadline:
                await self._woken(deadline)
            batch, size = [], 0
            while size < self.max_batch:
                if self._pending:
                    if batch and size + len(self._pending[0].texts) > self.max_batch:
                        break  # it starts the next batch
                    request = self._pending.popleft()
                    batch.append(request)
                    size += len(request.texts)
                    self._queued_texts -= len(request.texts)
                    continue
                if not self._arriving or loop.time() >= deadline:
                    break
                await self._woken(deadline)
            self._running_texts += size
            task = loop.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _woken(self, deadline: float | None = None) -> None:
        """Until a request is queued or has been read, or a batch is answered (or the deadline)."""
        self._wakeup.clear()
        timeout = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    def _share(self) -> int:
        """A thread's share of the texts in the server, queued or running: split among the threads
        and one batch more, the next, queued while the threads run theirs (with only as many
        batches as threads, a thread that has just answered its batch waits, idle, for its
        clients to come back)."""
        return min(self.max_batch, -(-(self._queued_texts + self._running_texts) // (self.threads + 1)))

    async def _run(self, batch: list[_Request]) -> None:
        texts = [t for r in batch for t in r.texts]
        contexts = [c for r in batch for c in r.contexts]
        started = time.perf_counter()
        try:
            probabilities = await self._on_model_thread(run_grouped, self.model, texts, contexts, self.max_batch)
        except Exception as e:  # the model failed: every request of the batch hears of it
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(e)
            return
        finally:
            self._running_texts -= len(texts)
            self._free.release()
            self._wakeup.set()
        self.on_batch(len(texts), time.perf_counter() - started)
        start = 0
        for request in batch:
            end = start + len(request.texts)
            if not request.future.done():  # done: the client went away
                request.future.set_result(probabilities[start:end])
            start = end


# A model call costs about as much as this many padded word pieces more (MiniLM-L6, 2 cores:
# 4-5 ms a call, 0.06 ms a word piece); `scripts/bench.py serve` measures what grouping buys.
CALL_COST = 64


def estimated_length(text: str, context: str) -> int:
    """Word pieces the model will read, guessed from characters (about 4 a piece in English chat)."""
    return (len(text) + len(context)) // 4 + 3


def run_grouped(model: Model, texts: list[str], contexts: list[str], max_batch: int) -> np.ndarray:
    """`model` on a batch as calls of similar lengths (`length_groups`), the rows back in order."""
    lengths = [estimated_length(t, c) for t, c in zip(texts, contexts)]
    result = None
    for group in length_groups(lengths, max_batch):
        probabilities = model([texts[i] for i in group], [contexts[i] for i in group])
        if result is None:
            result = np.empty((len(texts), probabilities.shape[-1]), probabilities.dtype)
        result[group] = probabilities
    return result


def length_groups(lengths: list[int], max_batch: int, call_cost: int = CALL_COST) -> list[list[int]]:
    """The texts of a batch in model calls of similar lengths, each padded only to its own longest:
    sorted by length, cut where the padding saved is worth another call (least total cost, by
    dynamic programming over the cut points), at most `max_batch` texts a call."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    n = len(order)
    best = [0] + [float("inf")] * n  # best[j]: least cost of the first j texts in sorted order
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = lengths[order[j - 1]]
        for i in range(max(0, j - max_batch), j):
            cost = best[i] + call_cost + (j - i) * longest
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], n
    while j:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]
