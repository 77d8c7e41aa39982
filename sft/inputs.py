"""Prepared examples to `tf.data` batches: tokenise once, then length-grouped, dynamically padded batches.

Padding is most of the work on short chatbot utterances: each batch is padded
only to its own longest example, and training batches are drawn from windows of
similar lengths. The train step has a `[None, None]` signature, so the varying
shapes trace once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from sft.data.example import Example

# Batches are sorted by length inside windows of this many batches: big enough
# to group lengths, small enough to keep the epoch's order random.
_WINDOW_BATCHES = 50
_TOKENIZE_CHUNK = 4096


@dataclass(frozen=True)
class EncodedSplit:
    """Word-piece ids of every example, with labels; the whole split in memory."""

    text_ids: tf.RaggedTensor  # [n, (pieces)]
    context_ids: tf.RaggedTensor | None  # [n, (pieces)] or None when no example has context
    labels: np.ndarray  # int32 [n], -1 where the label is unknown
    lengths: np.ndarray  # packed length before truncation, [CLS] and [SEP]s included

    def __len__(self) -> int:
        return len(self.labels)


def encode(preprocessor, examples: Sequence[Example], label_ids: dict[str, int]) -> EncodedSplit:
    """Tokenise texts (and context turns, newest last, as the second segment) with the TF Hub preprocessor."""
    text_ids = _tokenize(preprocessor, [e.text for e in examples])
    lengths = text_ids.row_lengths().numpy() + 2
    context_ids = None
    if any(e.context for e in examples):
        context_ids = _tokenize(preprocessor, [" ".join(e.context) for e in examples])
        lengths = lengths + context_ids.row_lengths().numpy() + 1
    labels = np.array([label_ids.get(e.label, -1) for e in examples], np.int32)
    return EncodedSplit(text_ids, context_ids, labels, lengths)


def _tokenize(preprocessor, texts: list[str]) -> tf.RaggedTensor:
    chunks = [
        preprocessor.tokenize(tf.constant(texts[i : i + _TOKENIZE_CHUNK])).merge_dims(-2, -1)
        for i in range(0, len(texts), _TOKENIZE_CHUNK)
    ]
    return tf.concat(chunks, axis=0) if chunks else tf.ragged.constant([[]], tf.int32)[:0]


def train_batches(split: EncodedSplit, preprocessor, batch_size: int, max_seq_length: int, seed: int, epoch: int):
    """One epoch of shuffled, length-grouped batches; the same (seed, epoch) gives the same order."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(split))
    window = batch_size * _WINDOW_BATCHES
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        order[start : start + window] = chunk[np.argsort(split.lengths[chunk], kind="stable")]
    batches = _index_batches(order, batch_size)
    return _packed(split, preprocessor, batches[rng.permutation(len(batches))], max_seq_length)


def eval_batches(split: EncodedSplit, preprocessor, batch_size: int, max_seq_length: int):
    """Batches sorted by length (least padding); returns the dataset and the example order."""
    order = np.argsort(split.lengths, kind="stable")
    return _packed(split, preprocessor, _index_batches(order, batch_size), max_seq_length), order


def _index_batches(order: np.ndarray, batch_size: int) -> np.ndarray:
    """[num_batches, batch_size] example indices; the last batch padded with -1."""
    padded = np.full(-(-len(order) // batch_size) * batch_size, -1, np.int64)
    padded[: len(order)] = order
    return padded.reshape(-1, batch_size)


def _packed(split: EncodedSplit, preprocessor, batches: np.ndarray, max_seq_length: int) -> tf.data.Dataset:
    text_ids, context_ids = split.text_ids, split.context_ids
    labels, lengths = tf.constant(split.labels), tf.constant(split.lengths, tf.int32)

    def pack(index):
        index = tf.boolean_mask(index, index >= 0)
        segments = [tf.gather(text_ids, index)]
        if context_ids is not None:
            segments.append(tf.gather(context_ids, index))
        seq_length = tf.minimum(tf.reduce_max(tf.gather(lengths, index)), max_seq_length)
        features = preprocessor.bert_pack_inputs(segments, seq_length=seq_length)
        return features, tf.gather(labels, index)

    return (
        tf.data.Dataset.from_tensor_slices(batches)
        .map(pack, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )
