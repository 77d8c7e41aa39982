"""The inference engine: class probabilities from a classifier, in length-sorted batches.

One engine behind validation during training, `sft evaluate`, `sft predict` and
the exported model's forward pass, so that they cannot disagree.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from sft import inputs
from sft.hub.encoder import input_signature

BATCH_SIZE = 64


class Engine:
    """Probabilities for encoded examples, batched by length (least padding), returned in input order."""

    def __init__(self, model, preprocessor, max_seq_length: int, xla: bool = False):
        self.model, self.preprocessor, self.max_seq_length, self.xla = model, preprocessor, max_seq_length, xla
        # One signature with [None, None] inputs: every batch shape reuses one trace.
        self._forward = tf.function(
            lambda features: tf.nn.softmax(model(features, training=False)),
            input_signature=[input_signature()], jit_compile=xla,
        )

    def probabilities(self, split: inputs.EncodedSplit) -> np.ndarray:
        """[n, classes] probabilities, row i for example i of `split`."""
        dataset, order = inputs.eval_batches(split, self.preprocessor, BATCH_SIZE, self.max_seq_length,
                                             length_multiple=inputs.LENGTH_MULTIPLE if self.xla else 1)
        result = np.empty((len(split), self.model.output_shape[-1]), np.float32)
        batches = [self._forward(features).numpy() for features, _ in dataset]
        if batches:
            result[order] = np.concatenate(batches)
        return result
