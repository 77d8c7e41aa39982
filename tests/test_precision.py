"""Mixed precision and XLA: switches that change how a step runs, never what it learns."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from sft import inputs, precision
from sft.config import config_from_dict
from sft.errors import ConfigError
from sft.hub.encoder import input_signature
from sft.predict import Predictor
from tests.conftest import sft_cli, train_three_steps, write_project


def test_dynamic_loss_scaling_trains_exactly_like_no_scaling(tiny):
    plain, _ = train_three_steps(tiny)
    scaled, optimizer = train_three_steps(tiny, keras.mixed_precision.LossScaleOptimizer)
    assert float(optimizer.loss_scale) == 2.0**15
    for a, b in zip(plain, scaled):  # scaling by a power of two is exact in floating point
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)


def test_an_overflowing_step_is_skipped_and_the_loss_scale_halves(tiny):
    model, start, _, _ = tiny
    model.set_weights(start)
    trainable = [w.numpy() for w in model.trainable_variables]
    # Class weights of 1e30 times a scale of 2**100 overflow float32 in the backward pass: every step does.
    after, optimizer = train_three_steps(
        tiny, lambda o: keras.mixed_precision.LossScaleOptimizer(o, initial_scale=2.0**100), class_weight=1e30)
    for a, b in zip(after, trainable):
        np.testing.assert_array_equal(a, b)  # weight decay skipped too
    assert float(optimizer.loss_scale) == 2.0**97 and int(optimizer.iterations) == 3


def test_mixed_bfloat16_runs_the_encoder_in_16_bits(tiny, monkeypatch):
    for name in ("DENYLIST_ADD", "INFERLIST_REMOVE"):  # configure() sets them; restored afterwards
        monkeypatch.delenv(f"TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_{name}", raising=False)
    model, start, _, _ = tiny
    model.set_weights(start)
    ids = tf.constant([[2, 7, 8, 9, 10, 11, 3]] * 4)
    features = {"input_word_ids": ids, "input_mask": tf.ones_like(ids), "input_type_ids": tf.zeros_like(ids)}

    def logits():  # a fresh function: Grappler rewrites a graph when it is first run
        return tf.function(lambda x: model(x, training=False), input_signature=[input_signature()])(features).numpy()

    exact = logits()
    try:
        precision.configure("mixed_bfloat16")
        mixed = logits()
    finally:
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": False})
    relative = np.abs(mixed - exact).max() / np.abs(exact).max()
    assert 1e-4 < relative < 2e-2  # bfloat16 keeps 8 bits of mantissa: changed, but only in the 3rd digit
    np.testing.assert_array_equal(logits(), exact)  # switched off again, float32 is back


def test_mixed_bfloat16_keeps_gelus_erfc_and_erf_in_float32_beside_the_users_own_lists(monkeypatch):
    deny, infer = (f"TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_{n}" for n in ("DENYLIST_ADD", "INFERLIST_REMOVE"))
    monkeypatch.setenv(deny, "Tanh")
    monkeypatch.delenv(infer, raising=False)
    try:
        precision.configure("mixed_bfloat16")
        precision.configure("mixed_bfloat16")  # twice: listed once
    finally:
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": False})
    assert os.environ[deny] == "Tanh,Erfc,Erf" and os.environ[infer] == "Erfc,Erf"


def test_mixed_float16_without_a_gpu_is_refused(tmp_path, tiny_hub):
    config = write_project(tmp_path, tiny_hub / "encoder", 12, "{epochs: 1}")
    result = sft_cli("train", "--config", config, "--set", "runtime.precision=mixed_float16", code=3)
    assert "mixed_float16 needs an NVIDIA GPU" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_xla_pads_batches_to_a_few_lengths(tiny):
    _, _, preprocessor, split = tiny
    lengths = {features["input_word_ids"].shape[1]
               for features, _ in inputs.eval_batches(split, preprocessor, 2, 6, length_multiple=4)[0]}
    assert lengths == {4, 6}  # rounded up to a multiple of 4, capped at the longest allowed


def test_xla_refuses_lazy_embedding_updates():
    with pytest.raises(ConfigError, match="embedding_updates: dense"):
        config_from_dict({"runtime": {"xla": True}})


@pytest.mark.slow
def test_xla_compiled_steps_and_forward_pass_compute_what_the_plain_ones_do(tiny):
    plain, _ = train_three_steps(tiny, embedding_updates="dense")
    compiled, _ = train_three_steps(tiny, xla=True, embedding_updates="dense")  # XLA refuses lazy updates
    for a, b in zip(plain, compiled):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    model, _, preprocessor, split = tiny
    np.testing.assert_allclose(Predictor(model, preprocessor, 32, xla=True).probabilities(split),
                               Predictor(model, preprocessor, 32).probabilities(split), atol=1e-5)
