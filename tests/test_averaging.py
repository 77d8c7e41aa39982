"""The weight average (`train.ema_decay`): how it moves and how it is swapped in (its use in a run: test_train.py)."""

import numpy as np
import pytest
import tensorflow as tf
from sft.averaging import WeightAverage
from tests.conftest import train_three_steps


def test_the_average_follows_the_decay_rule_step_by_step():
    weight = tf.Variable([0.0, 10.0])
    average = WeightAverage([weight], decay=0.5)
    expected = np.array([0.0, 10.0])
    for step, value in enumerate([[4.0, 4.0], [8.0, 0.0], [2.0, 6.0]], start=1):
        weight.assign(value)
        average.update(tf.constant(step, tf.int64))
        d = min(0.5, (1 + step) / (10 + step))  # capped by the warm-up rule from step 1 on: 2/11, 3/12, 4/13
        expected = d * expected + (1 - d) * np.array(value)
        np.testing.assert_allclose(average.averages[0].numpy(), expected, rtol=1e-6)


def test_swapping_in_puts_the_average_in_the_model_and_always_puts_the_weights_back():
    weight = tf.Variable([1.0, 2.0])
    average = WeightAverage([weight], decay=0.9)
    average.averages[0].assign([5.0, 6.0])
    with pytest.raises(RuntimeError), average.swapped_in():
        assert weight.numpy().tolist() == [5.0, 6.0]
        raise RuntimeError("validation failed")
    assert weight.numpy().tolist() == [1.0, 2.0]
    assert average.averages[0].numpy().tolist() == [5.0, 6.0]


def test_the_training_step_moves_the_average_after_every_optimizer_step(tiny):
    seen = []  # (weights, average) after each step
    record = lambda step: seen.append(  # noqa: E731
        ([w.numpy() for w in step.variables], [a.numpy() for a in step.average.averages]))
    model, start, _, _ = tiny
    model.set_weights(start)
    expected = [w.numpy() for w in model.trainable_variables]
    train_three_steps(tiny, after_step=record, ema_decay=0.99)
    for step, (trained, average) in enumerate(seen, start=1):
        d = min(0.99, (1 + step) / (10 + step))
        expected = [d * e + (1 - d) * w for e, w in zip(expected, trained)]
        for got, want in zip(average, expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert not np.allclose(seen[-1][0][0], seen[-1][1][0])  # the average lags the weights
