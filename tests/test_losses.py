"""The training loss: label smoothing and R-Drop."""

import math

import numpy as np
import tensorflow as tf
from sft import losses
from tests.conftest import train_three_steps


def test_label_smoothing_spreads_its_mass_over_every_class():
    logits = tf.math.log([[0.7, 0.2, 0.1]])
    smoothed = float(losses.cross_entropy(tf.constant([0]), logits, smoothing=0.3)[0])
    target = np.array([0.7 + 0.1, 0.1, 0.1])  # 1 - 0.3 on the label, 0.3 / 3 on each class
    assert math.isclose(smoothed, -(target * np.log([0.7, 0.2, 0.1])).sum(), rel_tol=1e-6)


def test_the_rdrop_term_is_the_symmetric_kl_between_the_two_passes():
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    kl = lambda a, b: float((a * np.log(a / b)).sum())  # noqa: E731
    got = float(losses.symmetric_kl(tf.math.log([p]), tf.math.log([q]))[0])
    assert math.isclose(got, (kl(p, q) + kl(q, p)) / 2, rel_tol=1e-6)
    labels, first, second = tf.constant([0]), tf.math.log([p]), tf.math.log([q])
    with_term = float(losses.rdrop(labels, first, second, 0.0, alpha=2.0)[0])
    mean_ce = -(math.log(0.5) + math.log(0.9)) / 2
    assert math.isclose(with_term, mean_ce + 2.0 * got, rel_tol=1e-6)


def test_rdrop_without_dropout_trains_exactly_like_plain_cross_entropy(tiny):
    # The tiny model has no dropout, so both passes agree and the KL term is 0: what remains checks
    # that the doubled batch is split back into its two passes and averaged, not summed.
    plain, _ = train_three_steps(tiny, label_smoothing=0.1)
    rdrop, _ = train_three_steps(tiny, label_smoothing=0.1, rdrop=1.0)
    for a, b in zip(plain, rdrop):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
