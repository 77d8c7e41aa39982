"""The training loss: cross-entropy (optionally label-smoothed) and R-Drop's consistency term.

R-Drop (Liang et al. 2021, "R-Drop: Regularized Dropout for Neural Networks")
feeds every example twice, so dropout draws two sub-networks, and adds the
symmetric KL divergence between their two predictions to the mean of their
two cross-entropies: the model is pushed to answer the same whatever dropout
removes. Per example, with p1, p2 the two softmaxes:

    (CE(p1) + CE(p2)) / 2 + alpha * (KL(p1 || p2) + KL(p2 || p1)) / 2
"""

from __future__ import annotations

import tensorflow as tf


def cross_entropy(labels, logits, smoothing: float = 0.0):
    """Per-example cross-entropy against one-hot targets, `smoothing` of the mass spread over all classes."""
    if smoothing == 0.0:
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    classes = tf.shape(logits)[-1]
    targets = tf.one_hot(labels, classes) * (1.0 - smoothing) + smoothing / tf.cast(classes, tf.float32)
    return tf.nn.softmax_cross_entropy_with_logits(targets, logits)


def symmetric_kl(first, second):
    """Per-example (KL(p || q) + KL(q || p)) / 2 of the softmaxes of two logit batches."""
    log_p, log_q = tf.nn.log_softmax(first), tf.nn.log_softmax(second)
    return 0.5 * tf.reduce_sum((tf.exp(log_p) - tf.exp(log_q)) * (log_p - log_q), axis=-1)


def rdrop(labels, first, second, smoothing: float, alpha: float):
    """Per-example R-Drop loss of two forward passes of the same batch (module docstring)."""
    mean_cross_entropy = 0.5 * (cross_entropy(labels, first, smoothing) + cross_entropy(labels, second, smoothing))
    return mean_cross_entropy + alpha * symmetric_kl(first, second)
