"""The classifier on top of the encoder: which vector the head reads."""

import numpy as np
import tensorflow as tf
from sft.config import ModelConfig
from sft.model import MaskedMean, build_classifier


def features(ids: list[int], length: int) -> dict[str, tf.Tensor]:
    padded = ids + [0] * (length - len(ids))
    mask = [1] * len(ids) + [0] * (length - len(ids))
    return {"input_word_ids": tf.constant([padded]), "input_mask": tf.constant([mask]),
            "input_type_ids": tf.zeros([1, length], tf.int32)}


def test_mean_pooling_averages_the_real_tokens_only():
    sequence = tf.constant([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    np.testing.assert_allclose(MaskedMean()(sequence, tf.constant([[1, 1, 0]])).numpy(), [[2.0, 3.0]])


def test_a_classifier_with_mean_pooling_is_blind_to_padding(tiny_hub):
    model = build_classifier(ModelConfig(encoder=str(tiny_hub / "encoder"), pooling="mean"), 3, seed=0)
    ids = [2, 7, 8, 9, 3]
    short, long = (model(features(ids, n), training=False).numpy() for n in (5, 16))
    np.testing.assert_allclose(short, long, atol=1e-5)


def test_the_pooling_option_changes_what_the_head_reads(tiny_hub):
    cls, mean = (build_classifier(ModelConfig(encoder=str(tiny_hub / "encoder"), pooling=p), 3, seed=0)
                 for p in ("cls", "mean"))
    mean.get_layer("logits").set_weights(cls.get_layer("logits").get_weights())  # the same head on both
    inputs = features([2, 7, 8, 3], 4)
    assert np.abs(cls(inputs, training=False).numpy() - mean(inputs, training=False).numpy()).max() > 1e-3
