"""Micro-batching: requests that arrive together run through the model as one batch.

One model call at a time, on one thread beside the event loop. While it runs,
new requests queue; when it returns, the queued requests (up to `max_batch`
texts) form the next batch. A batch waits at most `max_wait` seconds for more,
and only while other requests are still being read: a lone request is not kept
waiting for company that is not coming. A batch of mixed lengths runs as a few
calls of similar lengths (`length_groups`): padding a batch to its longest text
cost more than half the model's time on Banking77.
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
    def __init__(self, max_batch: int, max_wait: float,
                 on_batch: Callable[[int, float], None] = lambda size, seconds: None):
        self.max_batch, self.max_wait, self.on_batch = max_batch, max_wait, on_batch
        self.model: Model | None = None  # set once loaded; until then nothing is submitted
        self._pending: deque[_Request] = deque()
        self._wakeup = asyncio.Event()
        self._arriving = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sft-model")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """After the server has answered what was in flight: end the loop and the model thread."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
        self._wakeup.set()
        return future

    async def run_exclusive(self, fn, *args):
        """`fn(*args)` on the model thread, between batches (for what is not batched)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch, size = [], 0
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                if self._pending:
                    if batch and size + len(self._pending[0].texts) > self.max_batch:
                        break  # it starts the next batch
                    request = self._pending.popleft()
                    batch.append(request)
                    size += len(request.texts)
                    continue
                remaining = deadline - loop.time()
                if not self._arriving or remaining <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
            await self._run(batch)

    async def _run(self, batch: list[_Request]) -> None:
        texts = [t for r in batch for t in r.texts]
        contexts = [c for r in batch for c in r.contexts]
        started = time.perf_counter()
        try:
            probabilities = await self.run_exclusive(self._call, texts, contexts)
        except Exception as e:  # the model failed: every request of the batch hears of it
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(e)
            return
        self.on_batch(len(texts), time.perf_counter() - started)
        start = 0
        for request in batch:
            end = start + len(request.texts)
            if not request.future.done():  # done: the client went away
                request.future.set_result(probabilities[start:end])
            start = end

    def _call(self, texts: list[str], contexts: list[str]) -> np.ndarray:
        lengths = [estimated_length(t, c) for t, c in zip(texts, contexts)]
        result = None
        for group in length_groups(lengths, self.max_batch):
            probabilities = self.model([texts[i] for i in group], [contexts[i] for i in group])
            if result is None:
                result = np.empty((len(texts), probabilities.shape[-1]), probabilities.dtype)
            result[group] = probabilities
        return result


# A model call costs about as much as this many padded word pieces more (MiniLM-L6, 2 cores:
# 4-5 ms a call, 0.06 ms a word piece); `scripts/bench.py serve` measures what grouping buys.
CALL_COST = 64


def estimated_length(text: str, context: str) -> int:
    """Word pieces the model will read, guessed from characters (about 4 a piece in English chat)."""
    return (len(text) + len(context)) // 4 + 3


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
