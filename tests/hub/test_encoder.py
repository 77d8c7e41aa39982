"""The encoder's own gradients (GELU, layer norm, attention recomputed) and dropout: autodiff's values, also after export."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
from sft.hub import encoder
from sft.hub.export import TINY_CONFIG, tiny_vocab


def plain_layer_norm(x, gamma, beta, eps=1e-12):
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + eps) * gamma + beta


def value_and_gradients(f, *args):
    """f(*args), and the gradients of a weighted sum of it (weights all different, so no symmetry hides an error)."""
    with tf.GradientTape() as tape:
        tape.watch(args)
        y = f(*args)
        weights = tf.reshape(tf.sin(tf.range(tf.size(y), dtype=tf.float32) / 7.0), tf.shape(y))
        loss = tf.reduce_sum(y * weights)
    return y, tape.gradient(loss, args)


@pytest.mark.parametrize("shape", [(6, 16), (2, 3, 16)])  # the layers' [tokens, hidden] and the embeddings' [b, s, hidden]
def test_layer_norm_matches_autodiff(shape):
    rng = np.random.default_rng(0)
    x, gamma, beta = (tf.constant(rng.normal(size=s), tf.float32) for s in (shape, shape[-1:], shape[-1:]))
    ours, our_gradients = value_and_gradients(lambda *a: encoder._normalise(*a, 1e-12), x, gamma, beta)
    plain, plain_gradients = value_and_gradients(plain_layer_norm, x, gamma, beta)
    np.testing.assert_array_equal(ours, plain)  # the same forward ops
    for got, want in zip(our_gradients, plain_gradients):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_gelu_matches_tensorflows_exact_gelu():
    # Forward by erfc, backward by erf: 0 and numbers near it, and the tails where erfc underflows and erf saturates.
    x = tf.constant(np.concatenate([np.linspace(-6, 6, 97), [1e-30, -1e-30, 1e-7, -1e-7, -20.0, 20.0]]), tf.float32)
    ours, (our_gradient,) = value_and_gradients(encoder._gelu, x)
    plain, (plain_gradient,) = value_and_gradients(lambda t: tf.nn.gelu(t, approximate=False), x)
    np.testing.assert_array_equal(ours, plain)
    np.testing.assert_allclose(our_gradient, plain_gradient, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_attention_recomputed_in_the_backward_pass_matches_autodiff(rate):
    rng = np.random.default_rng(1)
    q, k, v = (tf.constant(rng.normal(size=(2, 3, 5, 4)), tf.float32) for _ in range(3))
    bias = tf.constant([0.0, 0.0, 0.0, -10000.0, -10000.0])[tf.newaxis, tf.newaxis, tf.newaxis, :]  # two padding keys

    drop = encoder._Site(tf.constant([4, 2], tf.int64) if rate else None, rate)

    def plain(q, k, v):  # the same dropout mask, autodiff's gradients
        return tf.matmul(drop(tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * 0.5 + bias, axis=-1)), v)

    ours, our_gradients = value_and_gradients(lambda *a: encoder._attention(*a, bias, 0.5, drop), q, k, v)
    reference, reference_gradients = value_and_gradients(plain, q, k, v)
    np.testing.assert_array_equal(ours, reference)
    for got, want in zip(our_gradients, reference_gradients):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_keeps_one_minus_rate_of_the_elements_and_the_mean(rate):
    site = encoder._Site(tf.constant([7, 1], tf.int64), rate)
    x = tf.ones([301, 333])  # an odd number of elements: the last 32 random bits serve only one
    y, (dx,) = value_and_gradients(site, x)
    kept = y.numpy() != 0
    assert abs(kept.mean() - (1 - rate)) < 0.005
    assert np.unique(y.numpy()[kept]).tolist() == [pytest.approx(1 / (1 - rate), rel=1e-4)]
    assert y.numpy().mean() == pytest.approx(1.0, abs=0.01)
    np.testing.assert_array_equal(site(x), y)  # the same seed drops the same elements
    weights = tf.reshape(tf.sin(tf.range(tf.size(x), dtype=tf.float32) / 7.0), x.shape)  # value_and_gradients'
    np.testing.assert_allclose(dx, np.where(kept, weights / (1 - rate), 0), rtol=1e-4, atol=1e-5)


def test_dropout_masks_of_two_seeds_are_independent():  # each site folds its number into the seed
    x = tf.ones([64, 64])
    a, b = (encoder._Site(tf.constant(s, tf.int64), 0.5)(x).numpy() != 0 for s in ([7, 1], [7, 2]))
    assert 0.4 < (a != b).mean() < 0.6  # independent masks disagree on about half the elements


def test_the_exported_encoder_trains_like_the_one_in_memory(tiny_hub):
    in_memory = encoder.BertEncoder(encoder.BertConfig(vocab_size=len(tiny_vocab()), **TINY_CONFIG), seed=0)
    loaded = hub.KerasLayer(str(tiny_hub / "encoder"), trainable=True)
    ids = tf.constant([[2, 40, 41, 42, 3, 0], [2, 50, 3, 0, 0, 0]])
    inputs = {"input_word_ids": ids, "input_mask": tf.cast(ids > 0, tf.int32), "input_type_ids": tf.zeros_like(ids)}

    def gradients_of(model, variables):
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=False)
            loss = tf.reduce_sum(outputs["sequence_output"] ** 3) + tf.reduce_sum(outputs["pooled_output"] ** 2)
        return {v.name: g for v, g in zip(variables, tape.gradient(loss, variables))}

    ours, theirs = gradients_of(in_memory, in_memory.trainable_variables), gradients_of(loaded, loaded.trainable_variables)
    assert ours.keys() == theirs.keys() and len(ours) > 30
    for name in ours:
        np.testing.assert_allclose(tf.convert_to_tensor(theirs[name]), tf.convert_to_tensor(ours[name]),
                                   rtol=1e-4, atol=1e-6, err_msg=name)
