"""Mixed precision: matmuls in 16 bits; variables, softmax, normalisation and the loss in float32.

A TF Hub encoder is a SavedModel traced in float32, out of reach of Keras'
dtype policies. So precision is applied where TensorFlow can still change the
computation: Grappler's auto-mixed-precision pass rewrites every graph a
`tf.function` builds (the encoder's inlined body included), converting
matmuls and what lies between them to 16 bits while keeping softmax,
normalisation, exp/log and reductions in float32. The head's matmul runs in 16
bits too, and its logits are cast back to float32 for the softmax and the loss.
Exported SavedModels stay float32: the rewrite happens when a graph is run, in
the process that runs it.

`runtime.precision: auto` picks one by the hardware (`sft/hardware.py`).

- `mixed_bfloat16`: oneDNN's pass, for CPUs with AVX512-BF16 or AMX. bfloat16
  has float32's exponent range, so gradients need no loss scaling.
- `mixed_float16`: the CUDA pass, for NVIDIA GPUs. float16 gradients underflow,
  so the loss is scaled up before the backward pass and the gradients down after
  (tf-keras' dynamic LossScaleOptimizer: the scale halves and the step is skipped
  on overflow, and doubles after 2,000 finite steps).
"""

from __future__ import annotations

import os

import tensorflow as tf

from sft.keras2 import keras

# Exact GELU's erfc: in bfloat16 TensorFlow computes it an element at a time, and it took three times
# as long as in float32 (scripts/bench.py profile: 47.8 against 12.5 ms of op time a step). Its
# gradient's erf goes with it, so that Φ(x) is computed as in the Banking77 runs that chose it (README).
_SLOW_IN_BFLOAT16 = ("Erfc", "Erf")
_GRAPPLER_PASS = {"mixed_bfloat16": "auto_mixed_precision_onednn_bfloat16", "mixed_float16": "auto_mixed_precision"}


def configure(precision: str) -> None:
    """Switch on the graph rewrite for `precision` (as `hardware.choose_precision` settled it);
    call before the first `tf.function` is traced."""
    if precision == "float32":
        return
    if precision == "mixed_bfloat16":
        _keep_in_float32(_SLOW_IN_BFLOAT16)
    tf.config.optimizer.set_experimental_options({_GRAPPLER_PASS[precision]: True})


def cast_once(function):
    """`function` (a ConcreteFunction) with its variables frozen into the graph as constants, called
    with keyword arguments. Under the bfloat16 rewrite a variable's weights are cast every call;
    a constant's cast folds into a bfloat16 constant once. For inference: Banking77 on 2 cores with
    AVX512-BF16, 1.24x float32's texts/s at batch 64, and 5.1 ms a text alone against 8.7 with
    casts every call (docs/experiments.md, 2026-12-06)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(function)
    # The frozen function takes its inputs flat: called by keyword, TensorFlow first tries and
    # fails its structured binding, formatting every input tensor into an error it then drops
    # (0.2-0.3 ms a call of eight texts, all of it holding the interpreter lock). The same graph
    # pruned under the inputs' own names binds at once, and answers in the original's structure.
    specs = {spec.name: spec for spec in tf.nest.flatten(function.structured_input_signature)}
    outputs = tf.nest.pack_sequence_as(function.structured_outputs, frozen.outputs)
    return frozen.prune(frozen.inputs, outputs, input_signature=((), specs))


def _keep_in_float32(ops: tuple[str, ...]) -> None:
    """Move `ops` from the pass's follow-your-inputs list to its float32 list.

    The pass reads these variables each time it rewrites a graph; a list the
    user set already is extended, not replaced.
    """
    for which in ("INFERLIST_REMOVE", "DENYLIST_ADD"):
        name = f"TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_{which}"
        listed = [op for op in os.environ.get(name, "").split(",") if op]
        os.environ[name] = ",".join(listed + [op for op in ops if op not in listed])


def wrap_optimizer(optimizer: keras.optimizers.Optimizer, precision: str) -> keras.optimizers.Optimizer:
    """float16 needs dynamic loss scaling; the other precisions train with the optimizer as it is."""
    if precision != "mixed_float16":
        return optimizer
    return keras.mixed_precision.LossScaleOptimizer(optimizer)


def scales_loss(optimizer) -> bool:
    return isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)

