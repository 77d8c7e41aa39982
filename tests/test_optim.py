"""The optimizer: AdamW, with each variable's learning rate scaled by its depth when asked."""

import numpy as np
import pytest
import tensorflow as tf
from sft.config import TrainConfig
from sft.errors import ConfigError
from sft.optim import build_optimizer, layer_scales

NAMES = [
    "word_embeddings/embeddings", "position_embedding/embeddings", "type_embeddings/embeddings",
    "embeddings/layer_norm/gamma", "transformer/layer_0/intermediate/kernel", "transformer/layer_1/output/bias",
    "pooler_transform/kernel", "logits/kernel",
]


def test_layer_decay_gives_each_layer_the_rate_of_the_layer_above_times_the_decay():
    scales = layer_scales(NAMES, 0.5)
    assert scales["transformer/layer_1/output/bias"] == 0.5
    assert scales["transformer/layer_0/intermediate/kernel"] == 0.25
    for embedding in NAMES[:4]:
        assert scales[embedding] == 0.125
    assert "pooler_transform/kernel" not in scales and "logits/kernel" not in scales  # full rate


def test_no_layer_decay_scales_nothing():
    assert layer_scales(NAMES, 1.0) == {}


def test_layer_decay_refuses_an_encoder_whose_layers_it_cannot_find():
    with pytest.raises(ConfigError, match="train.layer_decay"):
        layer_scales(["encoder/block0/w", "logits/kernel"], 0.9)


def test_the_first_step_moves_each_variable_by_its_scaled_learning_rate():
    # Adam's first update is lr * g / (|g| + eps): the learning rate itself, whatever the gradient's size.
    names = ["word_embeddings/embeddings", "transformer/layer_0/x/kernel", "transformer/layer_1/x/kernel",
             "logits/kernel"]
    variables = [tf.Variable(tf.zeros([4, 3]), name=name) for name in names]
    config = TrainConfig(learning_rate=1e-2, weight_decay=0.0, warmup_fraction=0.0, layer_decay=0.5)
    optimizer = build_optimizer(config, total_steps=100, variables=variables)
    optimizer.apply_gradients(zip([tf.fill([4, 3], g) for g in (3.0, -0.5, 2.0, 7.0)], variables))
    moved = [float(np.abs(v.numpy()).max()) for v in variables]
    np.testing.assert_allclose(moved, [1e-2 * 0.125, 1e-2 * 0.25, 1e-2 * 0.5, 1e-2], rtol=1e-4)


def test_weight_decay_follows_the_scaled_rate_too():
    variables = [tf.Variable(tf.ones([2]), name=n) for n in ("transformer/layer_0/x/kernel", "logits/kernel")]
    config = TrainConfig(learning_rate=1e-2, weight_decay=0.1, warmup_fraction=0.0, layer_decay=0.5)
    optimizer = build_optimizer(config, total_steps=100, variables=variables)
    optimizer.apply_gradients(zip([tf.zeros([2]), tf.zeros([2])], variables))  # zero gradient: decay alone
    np.testing.assert_allclose([v.numpy()[0] for v in variables], [1 - 0.1 * 1e-2 * 0.5, 1 - 0.1 * 1e-2], rtol=1e-6)


def test_lazy_updates_move_and_decay_only_the_rows_a_batch_used():
    table = tf.Variable(tf.ones([5, 3]), name="word_embeddings/embeddings")
    dense = tf.Variable(tf.ones([5, 3]), name="transformer/layer_0/x/kernel")
    config = TrainConfig(learning_rate=1e-2, weight_decay=0.1, warmup_fraction=0.0, embedding_updates="lazy")
    optimizer = build_optimizer(config, total_steps=100, variables=[table, dense])
    used_row = tf.IndexedSlices(tf.fill([1, 3], 2.0), tf.constant([1]), dense_shape=tf.constant([5, 3]))
    optimizer.apply_gradients([(used_row, table), (tf.convert_to_tensor(used_row), dense)])
    # The row used moves as in a dense variable: decayed, and Adam's first step of size lr.
    np.testing.assert_allclose(table.numpy()[1], dense.numpy()[1], rtol=1e-6)
    assert table.numpy()[1, 0] == pytest.approx(1 - 0.1 * 1e-2 - 1e-2, rel=1e-4)
    # The others stay as they were; a dense variable's decay every row.
    assert (np.delete(table.numpy(), 1, axis=0) == 1).all()
    np.testing.assert_allclose(np.delete(dense.numpy(), 1, axis=0), 1 - 0.1 * 1e-2, rtol=1e-6)


def test_three_steps_follow_adamw_with_the_schedule_rate_and_bias_corrections_of_each_step():
    # Inside a tf.function, as training runs it: steps 2 and 3 show that the schedule's rate and
    # Adam's bias corrections move on with the step count, for the fused update and the lazy rows.
    table = tf.Variable(tf.ones([4, 2]), name="word_embeddings/embeddings")
    kernel = tf.Variable(tf.ones([4, 2]), name="transformer/layer_0/x/kernel")
    config = TrainConfig(learning_rate=1e-2, weight_decay=0.1, warmup_fraction=0.0, embedding_updates="lazy")
    optimizer = build_optimizer(config, total_steps=4, variables=[table, kernel])
    gradients = [np.full([4, 2], g, np.float32) * np.arange(1, 5, dtype=np.float32)[:, None] for g in (1.0, -3.0, 0.5)]

    @tf.function
    def step(gradient):
        optimizer.apply_gradients([(tf.IndexedSlices(gradient, tf.range(4)), table), (gradient, kernel)])

    expected, m, v = np.ones([4, 2]), np.zeros([4, 2]), np.zeros([4, 2])
    b1, b2, eps = optimizer.beta_1, optimizer.beta_2, optimizer.epsilon
    for t, g in enumerate(gradients, start=1):
        step(tf.constant(g))
        lr = 1e-2 * (4 - (t - 1)) / 4  # linear decay from the peak, no warm-up
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        expected = expected * (1 - 0.1 * lr) - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(kernel.numpy(), expected, rtol=1e-5)
        np.testing.assert_allclose(table.numpy(), expected, rtol=1e-5)
