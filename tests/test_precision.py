"""Mixed precision and XLA: switches that change how a step runs, never what it learns."""

import json
import os
import platform
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from sft.keras2 import keras
from sft import hardware, inputs, precision
from sft.config import config_from_dict
from sft.errors import ConfigError
from sft.hardware import Hardware
from sft.hub.encoder import input_signature
from sft.engine import Engine
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


AMX_CPU = Hardware(frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}))
AVX512_CPU = Hardware(frozenset({"avx2", "avx512f"}))  # Skylake: oneDNN emulates bfloat16
AVX2_CPU = Hardware(frozenset({"avx2", "fma"}))  # oneDNN rewrites nothing
A100 = ("NVIDIA A100-SXM4-40GB", (8, 0))
P100 = ("Tesla P100-PCIE-16GB", (6, 0))


@pytest.mark.parametrize("machine, chosen", [
    (AMX_CPU, "mixed_bfloat16"),
    (Hardware(frozenset({"avx512f", "avx512_bf16"})), "mixed_bfloat16"),  # Cooper Lake, Zen 4
    (AVX512_CPU, "float32"),
    (AVX2_CPU, "float32"),
    (Hardware(frozenset()), "float32"),  # not Linux: nothing known
    (Hardware(AVX2_CPU.cpu_flags, gpus=(A100,)), "mixed_float16"),
    (Hardware(AMX_CPU.cpu_flags, gpus=(A100,)), "mixed_float16"),  # the GPU runs the model, not the CPU
    (Hardware(AMX_CPU.cpu_flags, gpus=(P100,)), "float32"),  # no tensor cores
])
def test_auto_precision_follows_the_hardware(machine, chosen):
    choice = hardware.choose_precision("auto", machine)
    assert choice.precision == chosen and choice.reason


@pytest.mark.parametrize("machine", [AMX_CPU, AVX512_CPU, AVX2_CPU, Hardware(AVX2_CPU.cpu_flags, gpus=(A100,))])
def test_float32_is_kept_wherever_it_is_asked_for(machine):
    assert hardware.choose_precision("float32", machine).precision == "float32"


def test_explicit_bfloat16_is_kept_where_it_runs_and_says_so_where_it_is_emulated():
    assert hardware.choose_precision("mixed_bfloat16", AMX_CPU).reason == "as configured"
    emulated = hardware.choose_precision("mixed_bfloat16", AVX512_CPU)
    assert emulated.precision == "mixed_bfloat16" and "emulates bfloat16" in emulated.reason


@pytest.mark.parametrize("requested, machine, message", [
    ("mixed_bfloat16", AVX2_CPU, "does nothing on this CPU (no AVX-512"),
    ("mixed_bfloat16", Hardware(AMX_CPU.cpu_flags, gpus=(A100,)), "would leave the GPU in float32"),
    ("mixed_float16", AMX_CPU, "needs an NVIDIA GPU and none is visible"),
])
def test_explicit_precision_that_would_do_nothing_is_refused(requested, machine, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        hardware.choose_precision(requested, machine)


def test_the_cpu_flags_are_read_from_this_machine():
    flags = hardware.detect().cpu_flags
    if platform.machine() in ("x86_64", "AMD64") and Path("/proc/cpuinfo").is_file():
        assert "sse2" in flags  # every x86-64 CPU has it
    elif not Path("/proc/cpuinfo").is_file():
        assert flags == frozenset()


BFLOAT16_REWRITE = next(iter(hardware.detect().cpu_flags & set(hardware.BFLOAT16_REWRITE)), None)


@pytest.mark.skipif(BFLOAT16_REWRITE is None,
                    reason="oneDNN rewrites graphs to bfloat16 only on CPUs with AVX-512 or AVX-NE-CONVERT; "
                           "this one has neither")
def test_mixed_bfloat16_runs_the_encoder_in_16_bits(tiny, monkeypatch):
    assert _logits_change_under_bfloat16(tiny, monkeypatch)


@pytest.mark.skipif(BFLOAT16_REWRITE is not None, reason=f"this CPU has {BFLOAT16_REWRITE}: oneDNN rewrites")
def test_without_avx512_the_bfloat16_rewrite_changes_nothing(tiny, monkeypatch):
    # Why `auto` keeps float32 and an explicit mixed_bfloat16 is refused on such a CPU.
    assert not _logits_change_under_bfloat16(tiny, monkeypatch)


def _logits_change_under_bfloat16(tiny, monkeypatch) -> bool:
    """Whether switching oneDNN's bfloat16 pass on changes the logits (in the 3rd digit, as it should)."""
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
    np.testing.assert_array_equal(logits(), exact)  # switched off again, float32 is back
    relative = np.abs(mixed - exact).max() / np.abs(exact).max()
    assert relative < 2e-2  # bfloat16 keeps 8 bits of mantissa: at most the 3rd digit changes
    return relative > 1e-4


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


@pytest.mark.parametrize("requested, machine, chosen", [
    ("auto", AVX2_CPU, "float32"), ("auto", AMX_CPU, "mixed_bfloat16"), ("mixed_bfloat16", AVX2_CPU, None),
    ("mixed_float16", AMX_CPU, None),
])
def test_train_plans_the_precision_the_hardware_allows(tmp_path, tiny_hub, monkeypatch, requested, machine, chosen):
    monkeypatch.setattr(hardware, "detect", lambda: machine)  # the rewrite it switches on is reset by conftest
    config = write_project(tmp_path, tiny_hub / "encoder", 12, "{epochs: 1}")
    result = sft_cli("train", "--config", config, "--set", f"runtime.precision={requested}", "--dry-run",
                     code=3 if chosen is None else 0)
    if chosen is None:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: runtime.precision")
    else:
        assert json.loads(result.stdout)["precision"] == chosen
        assert f"precision: {chosen} (" in result.stderr


def test_evaluation_batches_hold_every_example_once_shortest_first(tiny):
    _, _, preprocessor, split = tiny
    batches = list(inputs.eval_batches(split, preprocessor, 2, 32))
    rows = np.concatenate([rows for rows, _ in batches])
    assert sorted(rows) == list(range(len(split)))
    assert list(split.lengths[rows]) == sorted(split.lengths)
    assert [len(rows) for rows, _ in batches] == [features["input_word_ids"].shape[0] for _, features in batches]


def test_xla_pads_batches_to_a_few_lengths(tiny):
    _, _, preprocessor, split = tiny
    lengths = {features["input_word_ids"].shape[1]
               for _, features in inputs.eval_batches(split, preprocessor, 2, 6, length_multiple=4)}
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
    np.testing.assert_allclose(Engine(model, preprocessor, 32, xla=True).split_probabilities(split),
                               Engine(model, preprocessor, 32).split_probabilities(split), atol=1e-5)


@pytest.mark.parametrize("machine, requested, expected", [
    (AMX_CPU, "auto", True), (Hardware(frozenset({"avx512f", "avx512_bf16"})), "auto", True),
    (AMX_CPU, "mixed_bfloat16", True), (AMX_CPU, "float32", False),
    (AVX512_CPU, "mixed_bfloat16", False),  # emulated: slower than float32, so a trained run predicts in float32
    (AVX2_CPU, "auto", False), (Hardware(AMX_CPU.cpu_flags, gpus=(A100,)), "auto", False),
])
def test_a_trained_run_predicts_in_bfloat16_where_training_would_and_the_cpu_has_the_units(machine, requested,
                                                                                           expected):
    assert hardware.inference_in_bfloat16(requested, machine) is expected


def test_weights_cast_once_to_bfloat16_answer_as_float32_does(tiny):
    """The frozen forward pass (weights as constants, cast once by the rewrite) on any CPU: where
    oneDNN has no bfloat16 it runs float32 and agrees exactly, elsewhere to bfloat16's precision."""
    model, _, preprocessor, split = tiny
    exact = Engine(model, preprocessor, 32).split_probabilities(split)
    precision.configure("mixed_bfloat16")
    cast_once = Engine(model, preprocessor, 32, bfloat16=True).split_probabilities(split)
    np.testing.assert_allclose(cast_once, exact, atol=0.02)
    assert (cast_once.argmax(-1) == exact.argmax(-1)).mean() >= 0.9


def test_weights_cast_once_bind_each_input_by_its_name_and_format_none(monkeypatch):
    """Three inputs of one shape, told apart only by name; a call formats no tensor (TensorFlow
    formats every input when a structured binding fails: a quarter millisecond a call)."""
    weight = tf.Variable(1.0)
    spec = {name: tf.TensorSpec([None], tf.float32, name=name) for name in ("b", "c", "a")}
    function = tf.function(lambda a, b, c: {"digits": weight * (100 * a + 10 * b + c)}).get_concrete_function(**spec)
    frozen = precision.cast_once(function)
    monkeypatch.setattr(type(tf.constant(0.0)), "__repr__", lambda tensor: pytest.fail("an input was formatted"))
    answer = frozen(c=tf.constant([3.0]), a=tf.constant([1.0]), b=tf.constant([2.0]))
    assert answer["digits"].numpy().tolist() == [123.0]
