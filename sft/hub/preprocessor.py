"""The BERT preprocessor as a `tf.Module`: TF Text WordPiece tokenisation and input packing.

Mirrors `tensorflow/bert_en_uncased_preprocess/3`: called on strings it gives the
three encoder inputs; `tokenize` and `bert_pack_inputs` expose the two halves.
Tokenisation runs TF Text's `FastBertTokenizer`, linear-time WordPiece: with the
word level rebuilt, 3.75× `BertTokenizer` on Banking77 (docs/experiments.md, 2026-11-29: FastBertTokenizer).
Lower-cased, it gives the same ids and words as `BertTokenizer`, which TF Hub's
own preprocessors use; cased, it also splits words at no-break spaces, as the
original BERT tokeniser does and `BertTokenizer` does not.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import tensorflow as tf
import tensorflow_text as text

from sft.errors import HubError

SPECIAL_TOKENS = {
    "padding_id": "[PAD]",
    "start_of_sequence_id": "[CLS]",
    "end_of_segment_id": "[SEP]",
    "mask_id": "[MASK]",
}


def read_vocab(path: str | Path) -> list[str]:
    try:
        tokens = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise HubError(f"cannot read vocabulary '{path}': {e}") from None
    missing = [t for t in [*SPECIAL_TOKENS.values(), "[UNK]"] if t not in tokens]
    if missing:
        raise HubError(f"vocabulary '{path}' lacks the special tokens {', '.join(missing)}")
    repeated = sorted(token for token, count in Counter(tokens).items() if count > 1)
    if repeated:
        raise HubError(f"vocabulary '{path}' lists {', '.join(repeated[:5])} more than once: each token needs one id")
    return tokens


class BertPreprocessor(tf.Module):
    """Raw strings to `input_word_ids`, `input_mask` and `input_type_ids`."""

    def __init__(self, vocab_file: str | Path, lower_case: bool = True, default_seq_length: int = 128):
        super().__init__(name="bert_preprocessor")
        vocab = read_vocab(vocab_file)
        self.special_ids = {key: vocab.index(token) for key, token in SPECIAL_TOKENS.items()}
        self.vocab_size = len(vocab)
        self.default_seq_length = default_seq_length
        self.vocab_file = tf.saved_model.Asset(str(vocab_file))
        self._tokenizer = text.FastBertTokenizer(
            vocab=vocab, token_out_type=tf.int32, lower_case_nfd_strip_accents=lower_case, unknown_token="[UNK]"
        )
        self._continues_word = tf.constant([token.startswith("##") for token in vocab])

    def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        """[batch] strings -> int32 word-piece ids [batch, (words), (pieces)]."""
        pieces = self._tokenizer.tokenize(strings)  # [batch, (pieces)]: no word level
        # Every piece but a "##" suffix starts a word, so the words come back from the ids alone.
        starts = tf.cast(~tf.gather(self._continues_word, pieces.flat_values), tf.int64)
        words = tf.RaggedTensor.from_value_rowids(pieces.flat_values, tf.cumsum(starts) - 1, nrows=tf.reduce_sum(starts))
        words_per_text = tf.math.unsorted_segment_sum(starts, pieces.value_rowids(), pieces.nrows())
        return tf.RaggedTensor.from_row_lengths(words, words_per_text)

    def get_special_tokens_dict(self) -> dict[str, tf.Tensor]:
        ids = {key: tf.constant(value, tf.int32) for key, value in self.special_ids.items()}
        return {"vocab_size": tf.constant(self.vocab_size, tf.int32), **ids}

    def bert_pack_inputs(self, segments: list[tf.RaggedTensor], seq_length) -> dict[str, tf.Tensor]:
        """[CLS] a [SEP] (b [SEP]) then padding to `seq_length`; long input is cut round-robin."""
        flat = [s.merge_dims(-2, -1) if s.ragged_rank == 2 else s for s in segments]
        seq_length = tf.cast(seq_length, tf.int32)
        budget = seq_length - (len(flat) + 1)  # room left after [CLS] and one [SEP] a segment
        trimmed = text.RoundRobinTrimmer(max_seq_length=budget).trim(flat)
        ids, type_ids = text.combine_segments(
            trimmed,
            start_of_sequence_id=self.special_ids["start_of_sequence_id"],
            end_of_segment_id=self.special_ids["end_of_segment_id"],
        )
        word_ids, mask = text.pad_model_inputs(ids, seq_length, pad_value=self.special_ids["padding_id"])
        type_ids, _ = text.pad_model_inputs(type_ids, seq_length, pad_value=0)
        return {
            "input_word_ids": tf.cast(word_ids, tf.int32),
            "input_mask": tf.cast(mask, tf.int32),
            "input_type_ids": tf.cast(type_ids, tf.int32),
        }

    def __call__(self, strings: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.bert_pack_inputs([self.tokenize(strings)], self.default_seq_length)
