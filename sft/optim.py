"""AdamW with decoupled weight decay, and BERT's linear warm-up then linear decay.

The update is tf-keras' AdamW with two changes for speed (docs/experiments.md,
measured with `scripts/bench.py`): dense gradients go through TensorFlow's fused Adam kernel
(one pass over each variable instead of several), and, with
`train.embedding_updates: lazy`, an embedding table moves only in the rows a
batch used, instead of touching all 30,522 rows every step: their moments (as
LazyAdam does) and their decoupled weight decay (as TensorFlow Addons' AdamW
does for sparse gradients). Every other variable decays every step.

With `train.layer_decay` below 1, each variable's learning rate (and so its
decoupled weight decay) is scaled by its depth in the encoder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import tensorflow as tf

from sft.config import TrainConfig
from sft.errors import ConfigError
from sft.keras2 import keras

# Decay the weights of matmuls and embeddings only, as BERT was pretrained.
NO_DECAY = ["layer_norm", "LayerNorm", "bias"]
# Tables looked up by token id (TF Hub BERT names): the ones `lazy` updates row by row.
LOOKUP_TABLES = ("word_embeddings", "type_embeddings")
EMBEDDINGS = ("word_embeddings", "position_embedding", "type_embeddings", "embeddings/")


def layer_scales(names: Sequence[str], decay: float) -> dict[str, float]:
    """Learning-rate multipliers of layer-wise decay, by variable name; a name not listed learns at 1.

    Of L transformer layers, layer n learns at decay**(L - n) and the embeddings
    at decay**(L + 1): the lower a layer, the more general what it learned in
    pretraining, the less it should move. The pooler and the head learn at 1.
    """
    if decay == 1.0:
        return {}
    layers = {name: int(m.group(1)) for name in names if (m := re.search(r"(?:^|/)layer_(\d+)/", name))}
    if not layers:
        raise ConfigError("train.layer_decay needs an encoder whose variables are named like TF Hub BERT's "
                          "(transformer/layer_<n>/...); this encoder's are not: set train.layer_decay: 1")
    depth = max(layers.values()) + 1
    scales = {name: decay ** (depth - n) for name, n in layers.items()}
    return scales | {name: decay ** (depth + 1) for name in names if name.startswith(EMBEDDINGS)}


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak, self.warmup_steps, self.total_steps = peak, warmup_steps, total_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        # No warm-up means the peak from the first step, not a first step at rate 0.
        warmup = step / self.warmup_steps if self.warmup_steps else tf.ones_like(step)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        return self.peak * tf.maximum(0.0, tf.minimum(warmup, decay))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


class AdamW(keras.optimizers.AdamW):
    """tf-keras AdamW with a fused dense update and, optionally, lazy sparse rows."""

    def __init__(self, *args, lazy_sparse: bool = False, lr_scales: dict[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_sparse = lazy_sparse
        self.lr_scales = lr_scales or {}

    def _rate_of(self, variable):
        lr = tf.cast(self.learning_rate, variable.dtype)
        scale = self.lr_scales.get(variable.name.split(":")[0], 1.0)
        return lr if scale == 1.0 else lr * scale

    def _apply_weight_decay(self, variables):
        pass  # in update_step instead: at each variable's own rate, and skipped with it (loss scaling)

    def update_step(self, gradient, variable):
        lazy = self.lazy_sparse and variable.name.startswith(LOOKUP_TABLES)
        if self.weight_decay and self._use_weight_decay(variable) and not lazy:  # decoupled: before, apart from Adam
            variable.assign(variable * (1 - self._shrink(variable)))  # the product's buffer becomes the variable's
        if lazy:
            if not isinstance(gradient, tf.IndexedSlices):
                # Summed over micro-batches or replicas the gradient arrives dense: its
                # non-zero rows are the rows used, so every path updates the same rows.
                rows = tf.where(tf.reduce_any(gradient != 0, axis=-1))[:, 0]
                gradient = tf.IndexedSlices(tf.gather(gradient, rows), rows)
            return self._lazy_sparse_update(gradient, variable)
        if isinstance(gradient, tf.IndexedSlices):  # `dense`: every row's moments move, as plain AdamW
            gradient = tf.convert_to_tensor(gradient)
        m, v = self._moments(variable)
        step = tf.cast(self.iterations + 1, variable.dtype)
        beta_1, beta_2 = (tf.cast(b, variable.dtype) for b in (self.beta_1, self.beta_2))
        # One kernel: m, v and the variable updated in a single pass, by Adam's formula.
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.handle, v=v.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=self._rate_of(variable), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, variable.dtype), grad=gradient,
        )

    def _shrink(self, variable):
        return tf.cast(self.weight_decay, variable.dtype) * self._rate_of(variable)

    def _lazy_sparse_update(self, gradient: tf.IndexedSlices, variable):
        m, v = self._moments(variable)
        step = tf.cast(self.iterations + 1, variable.dtype)
        lr = self._rate_of(variable)
        alpha = lr * tf.sqrt(1 - tf.pow(self.beta_2, step)) / (1 - tf.pow(self.beta_1, step))
        rows, position = tf.unique(gradient.indices)  # a token twice in a batch: its gradients add up
        values = tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(rows)[0])
        m_rows = tf.gather(m, rows) * self.beta_1 + values * (1 - self.beta_1)
        v_rows = tf.gather(v, rows) * self.beta_2 + tf.square(values) * (1 - self.beta_2)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        update = alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon)
        if self.weight_decay and self._use_weight_decay(variable):
            update += tf.gather(variable, rows) * self._shrink(variable)  # decoupled, as for dense
        variable.scatter_sub(tf.IndexedSlices(update, rows))

    def _moments(self, variable):
        index = self._index_dict[self._var_key(variable)]
        return self._momentums[index], self._velocities[index]


def build_optimizer(config: TrainConfig, total_steps: int, variables: Sequence[tf.Variable]) -> AdamW:
    """AdamW on the schedule of `config`, for the trainable `variables` of the model."""
    schedule = WarmupLinearDecay(config.learning_rate, int(config.warmup_fraction * total_steps), total_steps)
    scales = layer_scales([v.name.split(":")[0] for v in variables], config.layer_decay)
    optimizer = AdamW(learning_rate=schedule, weight_decay=config.weight_decay, epsilon=1e-6,
                      lazy_sparse=config.embedding_updates == "lazy", lr_scales=scales)
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer
