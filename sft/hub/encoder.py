"""The BERT encoder as a `tf.Module`: one builder for the tiny random test model and real checkpoints.

Variables are named like the official TF Hub BERT encoders' so that weight decay
can exclude `layer_norm` and `bias` by name, whatever the handle.

A training step's peak memory is the activations its backward pass keeps, and
the longest batches set it. So three pieces carry their own gradients: GELU
keeps only its input, layer normalisation the normalised x and 1/σ (autodiff kept
every intermediate of their formulas), and attention keeps q, k and v and
computes its probabilities again in the backward pass instead of keeping them
(they grow with the square of the length). Forward and backward passes of the
exported MiniLM on a (32, 98) batch peak at about 1,550 MB, against 2,093 with
autodiff's gradients (docs/experiments.md). The forward ops are
the same as autodiff's: outputs are unchanged to the bit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from sft.errors import HubError
from sft.hub import INPUT_NAMES  # the three int32 [batch, seq] inputs of every TF Hub BERT encoder


def input_signature() -> dict[str, tf.TensorSpec]:
    """The encoder inputs at any batch size and length: one trace serves them all."""
    return {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES}


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    @classmethod
    def from_hf_json(cls, path: Path) -> BertConfig:
        """Read the common open `config.json` of a BERT checkpoint."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise HubError(f"cannot read checkpoint config '{path}': {e}") from None
        if raw.get("model_type", "bert") != "bert" or raw.get("hidden_act", "gelu") != "gelu":
            raise HubError(f"'{path}' is not a BERT config with GELU activation (model_type/hidden_act)")
        try:
            return cls(
                vocab_size=raw["vocab_size"],
                hidden_size=raw["hidden_size"],
                num_layers=raw["num_hidden_layers"],
                num_heads=raw["num_attention_heads"],
                intermediate_size=raw["intermediate_size"],
                max_position=raw.get("max_position_embeddings", 512),
                type_vocab_size=raw.get("type_vocab_size", 2),
                dropout=raw.get("hidden_dropout_prob", 0.1),
                attention_dropout=raw.get("attention_probs_dropout_prob", 0.1),
                layer_norm_eps=raw.get("layer_norm_eps", 1e-12),
                initializer_range=raw.get("initializer_range", 0.02),
            )
        except KeyError as e:
            raise HubError(f"checkpoint config '{path}' lacks the key {e}") from None

    def to_dict(self) -> dict:
        return asdict(self)


def variable_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
    """Every encoder variable, by name, with its shape: the contract for loaded weights."""
    h, i = config.hidden_size, config.intermediate_size
    shapes = {
        "word_embeddings/embeddings": (config.vocab_size, h),
        "position_embedding/embeddings": (config.max_position, h),
        "type_embeddings/embeddings": (config.type_vocab_size, h),
        "embeddings/layer_norm/gamma": (h,),
        "embeddings/layer_norm/beta": (h,),
        "pooler_transform/kernel": (h, h),
        "pooler_transform/bias": (h,),
    }
    for n in range(config.num_layers):
        p = f"transformer/layer_{n}"
        for dense, (fan_in, fan_out) in {
            "self_attention/query": (h, h),
            "self_attention/key": (h, h),
            "self_attention/value": (h, h),
            "self_attention/attention_output": (h, h),
            "intermediate": (h, i),
            "output": (i, h),
        }.items():
            shapes[f"{p}/{dense}/kernel"] = (fan_in, fan_out)
            shapes[f"{p}/{dense}/bias"] = (fan_out,)
        for norm in ("self_attention_layer_norm", "output_layer_norm"):
            shapes[f"{p}/{norm}/gamma"] = (h,)
            shapes[f"{p}/{norm}/beta"] = (h,)
    return shapes


class BertEncoder(tf.Module):
    """A BERT encoder with the official TF Hub call interface.

    >>> encoder = BertEncoder(BertConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=2,
    ...                                  intermediate_size=64))
    >>> ids = tf.constant([[2, 7, 3]])
    >>> out = encoder({"input_word_ids": ids, "input_mask": tf.ones_like(ids),
    ...                "input_type_ids": tf.zeros_like(ids)}, training=False)
    >>> out["pooled_output"].shape
    TensorShape([1, 32])

    `weights` maps the names of `variable_shapes(config)` to arrays; without it the
    encoder is randomly initialised from `seed`, as BERT is before pretraining.
    """

    def __init__(self, config: BertConfig, weights: Mapping[str, np.ndarray] | None = None, seed: int = 0):
        super().__init__(name="bert")
        self.config = config
        shapes = variable_shapes(config)
        if weights is not None:
            _check_weights(shapes, weights)
        rng = np.random.default_rng(seed)

        def initial(name: str, shape: tuple[int, ...]) -> np.ndarray:
            if weights is not None:
                return np.asarray(weights[name], dtype=np.float32)
            if name.endswith(("bias", "beta")):
                return np.zeros(shape, np.float32)
            if name.endswith("gamma"):
                return np.ones(shape, np.float32)
            draw = rng.standard_normal(shape).clip(-2, 2)  # BERT's truncated normal
            return (draw * config.initializer_range).astype(np.float32)

        self._weights = {name: tf.Variable(initial(name, shape), name=name) for name, shape in shapes.items()}
        # Dropout draws from stateless RNG seeded by this counter: it is saved and
        # checkpointed with the weights, so a resumed run sees the same masks.
        self.dropout_seed = tf.Variable(
            [seed, 0],
            dtype=tf.int64,
            trainable=False,
            name="dropout_seed",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    def __call__(self, inputs: Mapping[str, tf.Tensor], training: bool = False) -> dict:
        c, w = self.config, self._weights
        ids, mask, type_ids = inputs["input_word_ids"], inputs["input_mask"], inputs["input_type_ids"]
        seq_length = tf.shape(ids)[1]
        dropout = _Dropout(self.dropout_seed, training)

        x = (
            tf.gather(w["word_embeddings/embeddings"], ids)
            + w["position_embedding/embeddings"][tf.newaxis, :seq_length]
            + tf.gather(w["type_embeddings/embeddings"], type_ids)
        )
        x = _layer_norm(x, w, "embeddings/layer_norm", c.layer_norm_eps)
        x = dropout(x, c.dropout)

        # Padding keys get a large negative score, so softmax gives them no weight.
        attention_bias = (1.0 - tf.cast(mask[:, tf.newaxis, tf.newaxis, :], x.dtype)) * -10000.0
        # The layers work on [batch * seq, hidden]: every dense layer is then one 2-D matmul.
        shape = tf.shape(x)
        x = tf.reshape(x, [-1, c.hidden_size])
        encoder_outputs = []
        for n in range(c.num_layers):
            x = self._transformer_layer(x, shape, attention_bias, f"transformer/layer_{n}", dropout)
            encoder_outputs.append(tf.reshape(x, shape))

        sequence_output = encoder_outputs[-1]
        pooled = tf.tanh(_dense(sequence_output[:, 0], w, "pooler_transform"))
        return {
            "pooled_output": pooled,
            "sequence_output": sequence_output,
            "encoder_outputs": encoder_outputs,
            "default": pooled,
        }

    def _transformer_layer(self, x, shape, attention_bias, prefix, dropout):
        c, w = self.config, self._weights
        batch, seq_length = shape[0], shape[1]
        heads, head_size = c.num_heads, c.hidden_size // c.num_heads

        def split_heads(t):  # [b, s, h] -> [b, heads, s, head_size]
            return tf.transpose(tf.reshape(t, [batch, seq_length, heads, head_size]), [0, 2, 1, 3])

        q = split_heads(_dense(x, w, f"{prefix}/self_attention/query"))
        k = split_heads(_dense(x, w, f"{prefix}/self_attention/key"))
        v = split_heads(_dense(x, w, f"{prefix}/self_attention/value"))
        attended = _attention(q, k, v, attention_bias, 1.0 / math.sqrt(head_size), dropout.fixed(c.attention_dropout))
        context = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [-1, c.hidden_size])
        attention = dropout(_dense(context, w, f"{prefix}/self_attention/attention_output"), c.dropout)
        x = _layer_norm(x + attention, w, f"{prefix}/self_attention_layer_norm", c.layer_norm_eps)

        hidden = _gelu(_dense(x, w, f"{prefix}/intermediate"))
        output = dropout(_dense(hidden, w, f"{prefix}/output"), c.dropout)
        return _layer_norm(x + output, w, f"{prefix}/output_layer_norm", c.layer_norm_eps)


class _Dropout:
    """Stateless dropout; each call site of one forward pass gets its own seed."""

    def __init__(self, seed_variable: tf.Variable, training: bool):
        self.training = training
        self.site = 0
        self.seed = seed_variable.assign_add([0, 1]) if training else None

    def __call__(self, x, rate: float):
        return self.fixed(rate)(x)

    def fixed(self, rate: float) -> _Site:
        """This site's dropout: called twice, it drops the same elements."""
        if not self.training or rate == 0.0:
            return _Site(None, 0.0)
        self.site += 1
        return _Site(tf.random.experimental.stateless_fold_in(self.seed, self.site), rate)


class _Site:
    """One dropout site: which elements it keeps is a function of its seed and the shape.

    Each element is kept when 16 random bits reach round(rate * 2¹⁶), so one
    32-bit Philox draw serves two elements: random numbers were 9.3% of a
    float32 training step's op time, and with this and the attention's backward
    pass drawing its mask once, 2.4% (`scripts/bench.py profile`). Kept elements
    are scaled by 2¹⁶ / (2¹⁶ - threshold), the exact inverse of their
    probability, so the expectation is unchanged.
    """

    def __init__(self, seed: tf.Tensor | None, rate: float):
        self.seed = seed
        self._threshold = round(rate * 65536)
        self._scale = 65536 / (65536 - self._threshold)

    def keep(self, shape: tf.Tensor) -> tf.Tensor | None:
        """A boolean mask of `shape`, or None where nothing is dropped."""
        if self.seed is None:
            return None
        size = tf.reduce_prod(shape)
        bits = tf.random.stateless_uniform([(size + 1) // 2], self.seed, dtype=tf.uint32, minval=None, maxval=None)
        halves = tf.reshape(tf.bitcast(bits, tf.uint16), [-1])[:size]
        return tf.reshape(halves >= tf.constant(self._threshold, tf.uint16), shape)

    def apply(self, x: tf.Tensor, keep: tf.Tensor | None) -> tf.Tensor:
        """x with the elements `keep` drops set to zero and the rest scaled; autodiff keeps only the mask."""
        if keep is None:
            return x
        return tf.where(keep, x * tf.cast(self._scale, x.dtype), tf.zeros([], x.dtype))

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return self.apply(x, self.keep(tf.shape(x)))


def _attention(q, k, v, bias, scale: float, dropout: _Site):
    """softmax(q kᵀ · scale + bias), dropped out, times v; [batch, heads, seq, head_size] in and out.

    The backward pass computes the attention probabilities again instead of
    keeping them: they grow with the square of the length, and the longest
    batches set a training run's peak memory.
    """

    @tf.custom_gradient
    def attend(q, k, v):
        def probabilities(q, k):
            return tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * scale + bias, axis=-1)

        def gradient(d_context):
            # Tied to the backward pass, or Grappler would merge this recomputation with the forward one.
            with tf.control_dependencies([d_context]):
                probs = probabilities(tf.identity(q), tf.identity(k))
            keep = dropout.keep(tf.shape(probs))  # the forward pass's mask, drawn again from its seed
            d_probs = dropout.apply(tf.matmul(d_context, v, transpose_b=True), keep)  # dropout is linear
            d_scores = probs * (d_probs - tf.reduce_sum(d_probs * probs, axis=-1, keepdims=True)) * scale
            return (tf.matmul(d_scores, k), tf.matmul(d_scores, q, transpose_a=True),
                    tf.matmul(dropout.apply(probs, keep), d_context, transpose_a=True))

        probs = probabilities(q, k)
        return tf.matmul(dropout.apply(probs, dropout.keep(tf.shape(probs))), v), gradient

    return attend(q, k, v)


def _dense(x, w, prefix):
    return tf.matmul(x, w[f"{prefix}/kernel"]) + w[f"{prefix}/bias"]


@tf.custom_gradient
def _gelu(x):
    """Exact GELU, x Φ(x), as `tf.nn.gelu(approximate=False)` computes it."""
    y = 0.5 * x * tf.math.erfc(-x * tf.cast(1.0 / math.sqrt(2.0), x.dtype))

    def gradient(dy):
        # Φ(x) computed, not taken as y / x from the output: Banking77 runs scored higher with it,
        # seed for seed (README). By erf, not erfc(-x/√2) again: Grappler would merge that with the
        # forward's erfc and keep its [tokens, 4 × hidden] output a layer until here.
        cdf = 0.5 + 0.5 * tf.math.erf(x * tf.cast(1.0 / math.sqrt(2.0), x.dtype))
        pdf = tf.exp(-0.5 * tf.square(x)) * tf.cast(1.0 / math.sqrt(2.0 * math.pi), x.dtype)
        return dy * (cdf + x * pdf)

    return y, gradient


def _layer_norm(x, w, prefix, eps):
    return _normalise(x, tf.convert_to_tensor(w[f"{prefix}/gamma"]), tf.convert_to_tensor(w[f"{prefix}/beta"]), eps)


def _normalise(x, gamma, beta, eps):
    @tf.custom_gradient
    def normalise(x, gamma, beta):
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        inverse_std = tf.math.rsqrt(variance + eps)
        normalised = (x - mean) * inverse_std

        def gradient(dy):
            leading = tf.range(tf.rank(dy) - 1)
            d_normalised = dy * gamma

            def mean_of(t):
                return tf.reduce_mean(t, axis=-1, keepdims=True)

            dx = inverse_std * (d_normalised - mean_of(d_normalised) - normalised * mean_of(d_normalised * normalised))
            return dx, tf.reduce_sum(dy * normalised, leading), tf.reduce_sum(dy, leading)

        return normalised * gamma + beta, gradient

    return normalise(x, gamma, beta)


def _check_weights(shapes: Mapping[str, tuple[int, ...]], weights: Mapping[str, np.ndarray]) -> None:
    for name, shape in shapes.items():
        if name not in weights:
            raise HubError(f"checkpoint lacks the tensor for '{name}' (expected shape {shape})")
        if tuple(weights[name].shape) != shape:
            raise HubError(f"checkpoint tensor for '{name}' has shape {tuple(weights[name].shape)}, expected {shape}")
