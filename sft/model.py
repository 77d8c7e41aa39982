"""The classifier: a TF Hub BERT encoder, then dropout and one logit a class on `pooled_output`.

This is the one module that imports Keras, and it is tf-keras (Keras 2):
`hub.KerasLayer` is a Keras 2 layer and cannot live in a Keras 3 model.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_hub as hub
import tf_keras as keras

from sft.config import ModelConfig
from sft.hub import resolve

INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")


def build_classifier(config: ModelConfig, num_classes: int, seed: int | None = None) -> keras.Model:
    """A Keras model from the three int32 encoder inputs to `num_classes` logits.

    `seed` restarts the dropout masks of encoders exported by `sft hub export`,
    so that a run's seed, not the export's, decides them.
    """
    inputs = {name: keras.Input(shape=(None,), dtype=tf.int32, name=name) for name in INPUT_NAMES}
    encoder = hub.KerasLayer(resolve.load(config.encoder, "encoder"), trainable=True, name="encoder")
    if seed is not None:
        for variable in encoder.non_trainable_weights:
            if variable.name.startswith("dropout_seed"):
                variable.assign([seed, 0])
    pooled = encoder(inputs)["pooled_output"]
    x = keras.layers.Dropout(config.dropout, name="classifier_dropout")(pooled)
    logits = keras.layers.Dense(
        num_classes, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02), name="logits"
    )(x)
    return keras.Model(inputs, logits, name="classifier")


def input_signature():
    return {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES}


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)
