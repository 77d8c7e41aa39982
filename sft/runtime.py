"""How a run uses the machine: threads, determinism, the distribution strategy, who writes.

None of this changes what is learned: a config moves between a laptop, a
multi-GPU box and a cluster by changing only the `runtime` section.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import tensorflow as tf

from sft import hardware, precision
from sft.config import RuntimeConfig
from sft.rundir import is_chief  # noqa: F401  (runtime.is_chief, as before)

log = logging.getLogger("sft")


def configure(runtime: RuntimeConfig) -> str:
    """Thread pools, determinism and precision; call before any other TensorFlow work.

    Returns the precision in force: `auto` resolved by the hardware, or the configured one.
    """
    set_threads(runtime.intra_op_threads, runtime.inter_op_threads, "runtime.")
    if runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    choice = hardware.choose_precision(runtime.precision, hardware.detect())
    log.info("precision: %s (%s)", choice.precision, choice.reason)
    precision.configure(choice.precision)
    return choice.precision


def set_threads(intra_op: int, inter_op: int = 0, prefix: str = "") -> None:
    """TensorFlow's thread pools (0: its own choice, one thread a core); they can be set only
    before TensorFlow's first operation, and a later wish is ignored with a warning."""
    for name, wanted, current, setter in (
        ("intra_op_threads", intra_op, tf.config.threading.get_intra_op_parallelism_threads,
         tf.config.threading.set_intra_op_parallelism_threads),
        ("inter_op_threads", inter_op, tf.config.threading.get_inter_op_parallelism_threads,
         tf.config.threading.set_inter_op_parallelism_threads),
    ):
        if wanted == 0 or wanted == current():
            continue
        try:
            setter(wanted)
        except RuntimeError:
            log.warning("%s%s=%d ignored: TensorFlow already started in this process", prefix, name, wanted)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """`auto`: TF_CONFIG means several workers, several GPUs mean mirrored, else one device."""
    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def write_dir(path: Path, chief: bool) -> Path:
    """Where this worker saves: every worker takes part in a multi-worker save, only the chief's is kept."""
    if chief:
        return path
    return Path(tempfile.mkdtemp(prefix="sft-worker-"))
