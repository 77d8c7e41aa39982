"""The classifier: a TF Hub BERT encoder, a pooled vector, dropout, and one logit a class.

The model is tf-keras (Keras 2), never Keras 3: `hub.KerasLayer` is a Keras 2
layer and cannot live in a Keras 3 model.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_hub as hub

from sft.config import ModelConfig
from sft.hub import resolve
from sft.hub.encoder import INPUT_NAMES
from sft.keras2 import keras



def build_classifier(config: ModelConfig, num_classes: int, seed: int | None = None,
                     encoder: str | None = None) -> keras.Model:
    """A Keras model from the three int32 encoder inputs to `num_classes` logits.

    `encoder` is the resolved handle (`resolve.Handles`), else `config.encoder`.
    `seed` restarts the dropout masks of encoders exported by `sft hub export`,
    so that a run's seed, not the export's, decides them.
    """
    inputs = {name: keras.Input(shape=(None,), dtype=tf.int32, name=name) for name in INPUT_NAMES}
    encoder = hub.KerasLayer(resolve.load(encoder or config.encoder, "encoder"), trainable=True, name="encoder")
    if seed is not None:
        for variable in encoder.non_trainable_weights:
            if variable.name.startswith("dropout_seed"):
                variable.assign([seed, 0])
    outputs = encoder(inputs)
    if config.pooling == "mean":
        pooled = MaskedMean(name="mean_pooling")(outputs["sequence_output"], inputs["input_mask"])
    else:
        pooled = outputs["pooled_output"]
    x = SeededDropout(config.dropout, seed=seed or 0, name="classifier_dropout")(pooled)
    logits = keras.layers.Dense(
        num_classes, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02), name="logits"
    )(x)
    return keras.Model(inputs, logits, name="classifier")


class MaskedMean(keras.layers.Layer):
    """The mean of `sequence_output` over the real tokens: padding must not dilute it."""

    def call(self, sequence, mask):
        mask = tf.cast(mask, sequence.dtype)[:, :, tf.newaxis]
        return tf.reduce_sum(sequence * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


class SeededDropout(keras.layers.Layer):
    """Dropout whose masks follow a counter saved with the weights.

    Keras' own dropout draws from a process-wide random state that checkpoints
    do not hold; with this counter a resumed run draws the masks the
    uninterrupted run would have.
    """

    def __init__(self, rate: float, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = rate, seed

    def build(self, input_shape):
        self.counter = self.add_weight(
            name="seed", shape=(2,), dtype=tf.int64, trainable=False,
            initializer=keras.initializers.Constant([self.seed, 0]),
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        return tf.nn.experimental.stateless_dropout(x, self.rate, seed=self.counter.assign_add([0, 1]))

    def get_config(self):
        return super().get_config() | {"rate": self.rate, "seed": self.seed}


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)


def non_finite_weights(model: keras.Model) -> list[str]:
    """Names of the weight tensors holding a NaN or an infinity: a model that must be neither saved nor served."""
    return [w.name for w in model.weights if w.dtype.is_floating and not tf.reduce_all(tf.math.is_finite(w))]
