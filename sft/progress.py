"""Training progress on stderr: a live bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("sft")


class Progress:
    """Counts steps without touching the device; `bar` redraws, `line` logs."""

    def __init__(self, total_steps: int, done_steps: int, stream=sys.stderr):
        self.total, self.done = total_steps, done_steps
        self.stream = stream
        self.live = stream.isatty()
        self.started = time.perf_counter()
        self.start_done = done_steps
        self.window_started, self.window_examples = self.started, 0

    def step(self, examples: int) -> None:
        self.done += 1
        self.window_examples += examples
        if self.live:
            rate = (self.done - self.start_done) / max(time.perf_counter() - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate else 0.0
            filled = int(30 * self.done / max(self.total, 1))
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} steps "
                f"{rate:.2f} steps/s ETA {eta / 60:.1f} min "
            )
            self.stream.flush()

    def eta(self) -> str:
        """Time left at this process's pace so far, as h:mm:ss (an upper bound under early stopping)."""
        ran = self.done - self.start_done
        if not ran:
            return "unknown"
        seconds = int((self.total - self.done) * (time.perf_counter() - self.started) / ran)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def examples_per_second(self) -> float:
        """Examples a second since the previous call."""
        now = time.perf_counter()
        rate = self.window_examples / max(now - self.window_started, 1e-9)
        self.window_started, self.window_examples = now, 0
        return rate

    def line(self, message: str, *args) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")
        log.info(message, *args)


def summary_scalar(name: str, value: float, step: int) -> None:
    """A TensorBoard scalar, written the way TensorBoard's own `scalar` writes it.

    `tf.summary.scalar` needs the tensorboard package installed; the event files
    do not, so training writes them without it and TensorBoard reads them anywhere.
    """
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )
    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=metadata)
