"""AdamW with decoupled weight decay, and BERT's linear warm-up then linear decay."""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from sft.config import TrainConfig

# Decay the weights of matmuls and embeddings only, as BERT was pretrained.
NO_DECAY = ["layer_norm", "LayerNorm", "bias"]


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak, self.warmup_steps, self.total_steps = peak, warmup_steps, total_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = step / max(self.warmup_steps, 1)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        return self.peak * tf.maximum(0.0, tf.minimum(warmup, decay))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def build_optimizer(config: TrainConfig, total_steps: int) -> keras.optimizers.Optimizer:
    schedule = WarmupLinearDecay(config.learning_rate, int(config.warmup_fraction * total_steps), total_steps)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay, epsilon=1e-6)
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer
