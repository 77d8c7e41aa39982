"""The inference engines: class probabilities for texts (and their context segments).

Every engine answers `probabilities(texts, contexts)`: `Engine` (TensorFlow, the
classifier in memory; also behind validation during training, on a split encoded
once), `sft.exported.ExportedModel` (a SavedModel export) and
`sft.onnx_model.OnnxModel` (ONNX Runtime, float32 or int8). `sft evaluate`,
`sft predict` and `sft serve` take any of them (`--engine`), and apply the
fallback above it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from sft import inputs, precision
from sft.hub.encoder import input_signature

BATCH_SIZE = 64


class Engine:
    """TensorFlow: probabilities batched by length (least padding), returned in input order."""

    def __init__(self, model, preprocessor, max_seq_length: int, xla: bool = False, with_context: bool = False,
                 bfloat16: bool = False):
        self.model, self.preprocessor, self.max_seq_length, self.xla = model, preprocessor, max_seq_length, xla
        self.with_context = with_context
        # One signature with [None, None] inputs: every batch shape reuses one trace.
        forward = tf.function(lambda features: tf.nn.softmax(tf.cast(model(features, training=False), tf.float32)),
                              input_signature=[input_signature()], jit_compile=xla)
        if bfloat16:  # the caller has switched the bfloat16 rewrite on (sft.trained)
            frozen = precision.cast_once(forward.get_concrete_function())
            self._forward = lambda features: frozen(**features)
        else:
            self._forward = forward

    def probabilities(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> np.ndarray:
        """[len(texts), classes]; `contexts[i]` is text i's context segment, read by a model
        trained with context."""
        contexts = (contexts if contexts is not None else [""] * len(texts)) if self.with_context else None
        return self.split_probabilities(inputs.encode_texts(self.preprocessor, texts, contexts))

    def split_probabilities(self, split: inputs.EncodedSplit) -> np.ndarray:
        """[n, classes] probabilities, row i for example i of `split` (tokenised once, as validation is)."""
        result = np.empty((len(split), self.model.output_shape[-1]), np.float32)
        for rows, features in inputs.eval_batches(split, self.preprocessor, BATCH_SIZE, self.max_seq_length,
                                                  length_multiple=inputs.LENGTH_MULTIPLE if self.xla else 1):
            result[rows] = self._forward(features).numpy()
        return result

