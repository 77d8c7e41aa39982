"""How a run uses the machine: thread pools now; devices, strategy and precision belong here too."""

from __future__ import annotations

import logging

import tensorflow as tf

from sft.config import RuntimeConfig

log = logging.getLogger("sft")


def configure(runtime: RuntimeConfig) -> None:
    """Apply thread settings; TensorFlow fixes its pools when it runs its first op."""
    for name, wanted, current, setter in (
        ("intra_op_threads", runtime.intra_op_threads, tf.config.threading.get_intra_op_parallelism_threads,
         tf.config.threading.set_intra_op_parallelism_threads),
        ("inter_op_threads", runtime.inter_op_threads, tf.config.threading.get_inter_op_parallelism_threads,
         tf.config.threading.set_inter_op_parallelism_threads),
    ):
        if wanted == 0 or wanted == current():
            continue  # 0: TensorFlow's own choice, one thread a core
        try:
            setter(wanted)
        except RuntimeError:
            log.warning("runtime.%s=%d ignored: TensorFlow already started in this process", name, wanted)
