"""Prepared examples to `tf.data` batches: tokenise once, then length-grouped, dynamically padded batches.

Padding is most of the work on short chatbot utterances: each batch is padded
only to its own longest example, and training batches are drawn from windows of
similar lengths. The train step has a `[None, None]` signature, so the varying
shapes trace once. A model trained with context (`data.context_turns` > 0)
always reads two segments, `[CLS] utterance [SEP] context [SEP]`, the context
empty for a dialogue's opener: the utterance is never cut for context, and
context loses its oldest word pieces first. How an example is packed depends on
the model alone, never on the other examples of its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from sft.data.dialogue import context_segment
from sft.data.example import Example

# Batches are sorted by length inside windows of this many batches: big enough
# to group lengths, small enough to keep the epoch's order random.
_WINDOW_BATCHES = 50
_TOKENIZE_CHUNK = 4096
# XLA compiles once per input shape: with `runtime.xla`, batches are padded to a
# multiple of this, so 128 tokens make at most 8 lengths instead of 128.
LENGTH_MULTIPLE = 16


@dataclass(frozen=True)
class EncodedSplit:
    """Word-piece ids of every example, with labels; the whole split in memory."""

    text_ids: tf.RaggedTensor  # [n, (pieces)]
    context_ids: tf.RaggedTensor | None  # [n, (pieces)] or None when no example has context
    labels: np.ndarray  # int32 [n], -1 where the label is unknown
    lengths: np.ndarray  # packed length before truncation, [CLS] and [SEP]s included

    def __len__(self) -> int:
        return len(self.labels)


def encode(preprocessor, examples: Sequence[Example], label_ids: dict[str, int], context_turns: int = 0) -> EncodedSplit:
    """Tokenise texts with the TF Hub preprocessor, and, for a model that reads `context_turns`
    previous turns, the last of them as the second segment."""
    contexts = [context_segment(e.context, context_turns) for e in examples] if context_turns else None
    labels = np.array([label_ids.get(e.label, -1) for e in examples], np.int32)
    return encode_texts(preprocessor, [e.text for e in examples], contexts, labels)


def encode_texts(preprocessor, texts: Sequence[str], contexts: Sequence[str] | None,
                 labels: np.ndarray | None = None) -> EncodedSplit:
    """Texts and, for a model that reads context, each one's context segment (else None)."""
    text_ids = _tokenize(preprocessor, list(texts))
    lengths = text_ids.row_lengths().numpy() + 2
    context_ids = None
    if contexts is not None:
        context_ids = _tokenize(preprocessor, list(contexts))
        lengths = lengths + context_ids.row_lengths().numpy() + 1
    labels = labels if labels is not None else np.full(len(texts), -1, np.int32)
    return EncodedSplit(text_ids, context_ids, labels, lengths)


def _tokenize(preprocessor, texts: list[str]) -> tf.RaggedTensor:
    chunks = [
        preprocessor.tokenize(tf.constant(texts[i : i + _TOKENIZE_CHUNK])).merge_dims(-2, -1)
        for i in range(0, len(texts), _TOKENIZE_CHUNK)
    ]
    return tf.concat(chunks, axis=0) if chunks else tf.ragged.constant([[]], tf.int32)[:0]


@dataclass(frozen=True)
class EpochPlan:
    """The micro-batches of one training epoch, in order, and the optimizer steps they make up.

    An optimizer step sees `batch_size` examples, fed as `accumulation` micro-batches
    of similar lengths; the last step of an epoch may be smaller.
    """

    micro_batches: np.ndarray  # [num_micro, micro_size] example indices, -1 where a batch is short
    step_sizes: np.ndarray  # [num_micro] examples in the optimizer step the micro-batch belongs to
    step_ends: np.ndarray  # [num_micro] True on the last micro-batch of a step

    def __len__(self) -> int:
        return len(self.micro_batches)

    def after(self, position: int) -> EpochPlan:
        """The rest of the epoch after `position` micro-batches (a resumed run)."""
        return EpochPlan(self.micro_batches[position:], self.step_sizes[position:], self.step_ends[position:])


def plan_epoch(lengths: np.ndarray, batch_size: int, accumulation: int, seed: int, epoch: int,
               group_lengths: bool = True) -> EpochPlan:
    """Shuffled, length-grouped batches; the same (seed, epoch) gives the same plan in any process."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    window = batch_size * _WINDOW_BATCHES if group_lengths else 1
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        order[start : start + window] = chunk[np.argsort(lengths[chunk], kind="stable")]
    steps = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    micro_size = batch_size // accumulation
    micro, sizes, ends = [], [], []
    for k in rng.permutation(len(steps)):
        pieces = [steps[k][i : i + micro_size] for i in range(0, len(steps[k]), micro_size)]
        micro += pieces
        sizes += [len(steps[k])] * len(pieces)
        ends += [False] * (len(pieces) - 1) + [True]
    padded = np.full((len(micro), micro_size), -1, np.int64)
    for row, piece in zip(padded, micro):
        row[: len(piece)] = piece
    return EpochPlan(padded, np.array(sizes, np.int32), np.array(ends))


def train_dataset(split: EncodedSplit, preprocessor, plan: EpochPlan, max_seq_length: int,
                  replicas: int = 1, first_replica: int = 0, local_replicas: int = 1,
                  pad_to: int | None = None, length_multiple: int = 1) -> tf.data.Dataset:
    """(features, labels, step_size) per replica batch, in the order the plan gives.

    Under a distribution strategy each micro-batch is dealt out across all
    `replicas` (replica r takes examples r, r + replicas, ...); this input pipeline
    yields the pieces of its own `local_replicas`, starting at `first_replica`.
    """
    pieces = [plan.micro_batches[:, r::replicas] for r in range(first_replica, first_replica + local_replicas)]
    batches = np.stack(pieces, axis=1).reshape(len(plan) * local_replicas, -1)
    step_sizes = np.repeat(plan.step_sizes, local_replicas)
    return _packed(split, preprocessor, batches, max_seq_length, step_sizes, pad_to, length_multiple)


def eval_batches(split: EncodedSplit, preprocessor, batch_size: int, max_seq_length: int, length_multiple: int = 1):
    """`(rows, features)` for each batch, sorted by length (least padding); `rows` are the
    batch's examples' places in `split`.

    Packed a batch at a time between the model's calls, not by tf.data: beside a live tf.data
    iterator, a bfloat16 model ran about a third of its passes on one core at a time (both
    intra-op threads taking turns; docs/experiments.md, 2026-12-06)."""
    order = np.argsort(split.lengths, kind="stable")
    text_ids, context_ids = split.text_ids, split.context_ids

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def pack(index):
        context = tf.gather(context_ids, index) if context_ids is not None else None
        return pack_batch(preprocessor, tf.gather(text_ids, index), context, max_seq_length, length_multiple)

    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield rows, pack(rows)


def _packed(split: EncodedSplit, preprocessor, batches: np.ndarray, max_seq_length: int,
            step_sizes: np.ndarray | None = None, pad_to: int | None = None,
            length_multiple: int = 1) -> tf.data.Dataset:
    """Each batch padded to its longest example, rounded up to `length_multiple` (at most
    `max_seq_length`); or, with `pad_to`, every batch to one length, as the TF tutorials
    do (the benchmark's baseline)."""
    text_ids, context_ids = split.text_ids, split.context_ids
    labels = tf.constant(split.labels)

    def pack(index, *step_size):
        index = tf.boolean_mask(index, index >= 0)
        context = tf.gather(context_ids, index) if context_ids is not None else None
        features = pack_batch(preprocessor, tf.gather(text_ids, index), context, max_seq_length,
                              length_multiple, pad_to)
        return (features, tf.gather(labels, index), *step_size)

    slices = (batches,) if step_sizes is None else (batches, step_sizes)
    return (
        tf.data.Dataset.from_tensor_slices(slices)
        .map(pack, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def pack_batch(preprocessor, text_ids: tf.RaggedTensor, context_ids: tf.RaggedTensor | None, max_seq_length: int,
               length_multiple: int = 1, pad_to: int | None = None) -> dict[str, tf.Tensor]:
    """The encoder's three inputs for a batch of word-piece ids, padded to its longest example
    (rounded up to `length_multiple`, at most `max_seq_length`), or to `pad_to`.
    Training, evaluation and the exported model's signatures all pack through here."""
    segments = [text_ids[:, : max_seq_length - 2]]
    if context_ids is not None:
        # The utterance comes first; its context gets the room left, newest turns kept.
        room = tf.maximum(max_seq_length - 3 - text_ids.row_lengths(), 0)
        segments = [text_ids[:, : max_seq_length - 3], _keep_last(context_ids, room)]
    packed_length = sum(s.row_lengths() for s in segments) + len(segments) + 1
    longest = tf.cast(tf.reduce_max(tf.concat([packed_length, [2]], axis=0)), tf.int32)  # an empty batch still packs
    rounded = tf.minimum(-(-longest // length_multiple) * length_multiple, max_seq_length)
    seq_length = rounded if pad_to is None else tf.constant(pad_to, tf.int32)
    return preprocessor.bert_pack_inputs(segments, seq_length=seq_length)


def _keep_last(ids: tf.RaggedTensor, count: tf.Tensor) -> tf.RaggedTensor:
    """The last `count[i]` ids of each row i: context is cut from its oldest turn."""
    positions = tf.ragged.range(ids.row_lengths())
    keep = positions >= tf.expand_dims(ids.row_lengths() - count, 1)
    return tf.ragged.boolean_mask(ids, keep)
