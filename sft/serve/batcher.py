"""Micro-batching: requests that arrive together run through the model as one batch.

Batches run on `threads` model threads beside the event loop, a batch a thread.
The event loop queues each request. A model thread that is free takes its next
batch from the queue itself, runs it, hands the answers to the event loop and
goes on to the next: it does not wait for the event loop, which under load is
busy writing the answers of the batch before.

A thread takes its share of the texts in the server (`_share`: those queued and
running, split among the threads and one batch more), no more, so that while
the threads run their batches a third is queued for whichever is free first:
clients that each wait for their answer come back together, as their batch did,
and a thread that took all of them ran, then sat idle while they came back
(busy 1.5 of 2 threads at concurrency 32 on onnx-int8; 2.0 with shares).

A batch waits at most `max_wait` seconds for company, and only while it is
likely to come:

- while other requests are still being read, so that a lone request is not kept
  waiting for company that is not coming;
- while another thread runs a batch and the queue holds less than half this
  thread's share: a free thread that took the first client to return would run a
  batch of two or three while the rest queued for the next, and the split, once
  made, lasts. Half, since a thread that waited for all of its share sat idle
  while the last of it came back.

Why several threads: a server's batches are small, and a small batch keeps two
cores busy badly when each of its matrix products is split between them; two
batches of 16 at once, a core each, ran 1.3-1.8x the texts of one on both cores
(`scripts/batch_threads.py`, docs/serving.md). A batch of mixed lengths runs as a
few calls of similar lengths (`length_groups`): padding a batch to its longest
text cost more than half the model's time on Banking77. What a call is worth in
padding depends on the engine and the CPU (a TensorFlow call's fixed part is its
graph's op dispatch; ONNX Runtime's int8 has almost none), so the server times
its model once at start (`measure_call_cost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# texts, their context segments -> [len(texts), classes] probabilities
Model = Callable[[list[str], list[str]], np.ndarray]


@dataclass
class _Request:
    texts: list[str]
    contexts: list[str]
    future: asyncio.Future


@dataclass
class _Job:  # run_alone's: not batched
    fn: Callable
    args: tuple
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, max_batch: int, max_wait: float, threads: int = 1,
                 on_batch: Callable[[int, float], None] = lambda size, seconds: None):
        self.max_batch, self.max_wait, self.threads, self.on_batch = max_batch, max_wait, threads, on_batch
        self.model: Model | None = None  # set once loaded; until then nothing is submitted
        self.call_cost = CALL_COST  # a call's price in word pieces, once measured (measure_call_cost)
        # Guards everything below; model threads wait on it for work, and for company.
        self._changed = threading.Condition()
        self._pending: deque[_Request] = deque()
        self._jobs: deque[_Job] = deque()
        self._queued_texts = self._running_texts = self._arriving = 0
        self._forming = self._stopping = False  # one thread at a time forms a batch
        self._threads = [threading.Thread(target=self._work, name=f"sft-model-{i}", daemon=True)
                         for i in range(threads)]
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for thread in self._threads:
            thread.start()

    async def stop(self) -> None:
        """After the server has answered what was in flight: the model threads finish and end."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        await asyncio.to_thread(lambda: [thread.join() for thread in self._threads if thread.is_alive()])

    @contextlib.contextmanager
    def arrival(self):
        """Around reading and checking a request: a batch being formed waits for it."""
        with self._changed:
            self._arriving += 1
        try:
            yield
        finally:
            with self._changed:
                self._arriving -= 1
                self._changed.notify_all()

    def submit(self, texts: list[str], contexts: list[str]) -> asyncio.Future:
        """The future of `[len(texts), classes]` probabilities."""
        future = self._loop.create_future()
        with self._changed:
            self._pending.append(_Request(texts, contexts, future))
            self._queued_texts += len(texts)
            self._changed.notify_all()
        return future

    async def run_alone(self, fn, *args):
        """`fn(*args)` on a model thread of its own, when one is free (for what is not batched)."""
        future = self._loop.create_future()
        with self._changed:
            self._jobs.append(_Job(fn, args, future))
            self._changed.notify_all()
        return await future

    # --- on the model threads -------------------------------------------------

    def _work(self) -> None:
        while (work := self._next()) is not None:
            if isinstance(work, _Job):
                try:
                    self._answer([(work.future, work.fn(*work.args))])
                except Exception as e:
                    self._answer([(work.future, e)])
            else:
                self._run(work)

    def _run(self, batch: list[_Request]) -> None:
        texts = [t for r in batch for t in r.texts]
        contexts = [c for r in batch for c in r.contexts]
        started = time.perf_counter()
        try:
            probabilities = run_grouped(self.model, texts, contexts, self.max_batch, self.call_cost)
        except Exception as e:  # the model failed: every request of the batch hears of it
            self._answer([(request.future, e) for request in batch])
            return
        finally:
            with self._changed:
                self._running_texts -= len(texts)
                self._changed.notify_all()
        self.on_batch(len(texts), time.perf_counter() - started)
        results, start = [], 0
        for request in batch:
            end = start + len(request.texts)
            results.append((request.future, probabilities[start:end]))
            start = end
        self._answer(results)

    def _next(self) -> list[_Request] | _Job | None:
        """This thread's next batch (or job), once it is worth running; None once stopping."""
        with self._changed:
            while self._forming or not (self._pending or self._jobs or self._stopping):
                self._changed.wait()
            if self._jobs:
                return self._jobs.popleft()
            if not self._pending:
                return None  # stopping, and nothing left
            self._forming = True
            try:
                return self._form_batch()
            finally:
                self._forming = False
                self._changed.notify_all()

    def _form_batch(self) -> list[_Request]:
        """With the lock held (waiting releases it): the first of the queue, up to this thread's share."""
        deadline = time.monotonic() + self.max_wait
        while self._running_texts and 2 * self._queued_texts < self._share() and self._wait_until(deadline):
            pass
        batch, size, limit = [], 0, self._share()
        while size < limit:
            if self._pending:
                if batch and size + len(self._pending[0].texts) > limit:
                    break  # it starts the next batch
                request = self._pending.popleft()
                batch.append(request)
                size += len(request.texts)
                self._queued_texts -= len(request.texts)
                continue
            if not self._arriving or not self._wait_until(deadline):
                break
        self._running_texts += size
        return batch

    def _wait_until(self, deadline: float) -> bool:
        """Until something changes (a request queued or read, a batch answered); False past the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self._changed.wait(left)
        return True

    def _share(self) -> int:
        """A thread's share of the texts in the server, queued or running: split among the threads
        and one batch more, the next, queued while the threads run theirs (with only as many
        batches as threads, a thread that has just answered its batch waits, idle, for its
        clients to come back)."""
        return min(self.max_batch, -(-(self._queued_texts + self._running_texts) // (self.threads + 1)))

    def _answer(self, results: list[tuple[asyncio.Future, object]]) -> None:
        """Hand results (or exceptions) to the event loop, one call a batch."""
        def settle():
            for future, result in results:
                if future.done():  # the client went away
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

        self._loop.call_soon_threadsafe(settle)


# A call's price in padded word pieces until the model's is measured (measure_call_cost): about
# a TensorFlow call's on one core of a 2-core AMD EPYC.
CALL_COST = 32


def estimated_length(text: str, context: str) -> int:
    """Word pieces the model will read, guessed from characters (about 4 a piece in English chat)."""
    return (len(text) + len(context)) // 4 + 3


def measure_call_cost(model: Model, repeats: int = 5, clock: Callable[[], float] = time.perf_counter) -> int:
    """What a call of `model` costs besides its texts, in padded word pieces (`estimated_length`'s):
    a call of one chat-sized text timed against a call of eight, the median of `repeats` each."""
    text = "please tell me how i can top up my card with a bank transfer"
    pieces = estimated_length(text, "")

    def median_time(size: int) -> float:
        times = []
        for _ in range(repeats):
            started = clock()
            model([text] * size, [""] * size)
            times.append(clock() - started)
        return sorted(times)[len(times) // 2]

    one, eight = median_time(1), median_time(8)
    if eight <= one:  # a clock too coarse, or a machine too busy, to tell
        return CALL_COST
    per_piece = (eight - one) / (7 * pieces)
    return max(0, round(one / per_piece) - pieces)


def run_grouped(model: Model, texts: list[str], contexts: list[str], max_batch: int,
                call_cost: int = CALL_COST) -> np.ndarray:
    """`model` on a batch as calls of similar lengths (`length_groups`), the rows back in order."""
    lengths = [estimated_length(t, c) for t, c in zip(texts, contexts)]
    result = None
    for group in length_groups(lengths, max_batch, call_cost):
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
