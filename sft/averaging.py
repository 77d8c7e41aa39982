"""An exponential moving average of the weights (Polyak averaging), `train.ema_decay`.

After every optimizer step the average moves towards the weights,
a <- d * a + (1 - d) * w, with d = min(ema_decay, (1 + t) / (10 + t)) at step t:
the rule of `tf.train.ExponentialMovingAverage` with `num_updates`, so that the
average forgets the first steps' weights instead of dragging them along. Late
in a run that is an average over roughly the last t / 9 steps.

Training never sees the average. It is swapped into the model while the loop
validates and saves, so that model selection, the best and last models and
everything downstream (evaluate, predict, export) use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import tensorflow as tf


class WeightAverage:
    def __init__(self, variables: Sequence[tf.Variable], decay: float):
        self.decay = decay
        self._weights = list(variables)
        # One copy a replica, all equal: every replica applies the same all-reduced gradients.
        self.averages = [
            tf.Variable(v.read_value(), trainable=False, name=f"average/{v.name.split(':')[0]}",
                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            for v in self._weights
        ]

    def update(self, step: tf.Tensor) -> None:
        """Move the average after optimizer step number `step` (counting from 1)."""
        t = tf.cast(step, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + t) / (10.0 + t))
        for average, weight in zip(self.averages, self._weights):
            average.assign_sub((1.0 - decay) * (average - tf.convert_to_tensor(weight)))

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The average in the model's variables for the duration; the trained weights back afterwards."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    def _swap(self) -> None:
        for average, weight in zip(self.averages, self._weights):
            held = tf.identity(weight)
            weight.assign(average)
            average.assign(held)
