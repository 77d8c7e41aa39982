"""BERT tokenisation without TensorFlow: the encoder's three inputs from texts, for ONNX Runtime.

The same ids as the TF Hub preprocessor (`sft.hub.preprocessor`, TF Text's
FastBertTokenizer) and its packing (`sft.inputs.pack_batch`) give. `normalize`
does in Python what TF Text does before splitting words (its Unicode tables are
newer than `tokenizers`'); Hugging Face `tokenizers`, configured with the
exported vocabulary, then splits words at white space and punctuation and runs
WordPiece. Packing follows
`pack_batch`: `[CLS] text [SEP]`, or, for a model trained with context,
`[CLS] text [SEP] context [SEP]` with the text cut first to leave room for its
`[SEP]`s and the context keeping its newest word pieces. `tests/test_tokenizer.py`
checks the ids against TensorFlow's on real and fuzzed text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# TF Text's FastBertTokenizer gives [UNK] for a word over this many UTF-8 bytes (its
# max_bytes_per_word); Hugging Face's WordPiece counts characters, so longer words are
# caught here.
MAX_WORD_BYTES = 100


class Tokenizer:
    """Texts (and their context segments) to `input_word_ids`, `input_mask`, `input_type_ids`."""

    def __init__(self, vocab_file: str | Path, lower_case: bool, max_seq_length: int, with_context: bool):
        from tokenizers import Tokenizer as WordPieceTokenizer, models, pre_tokenizers

        vocab = Path(vocab_file).read_text(encoding="utf-8").splitlines()
        ids = {token: i for i, token in enumerate(vocab)}
        self.vocab_size = len(vocab)
        self._tokenizer = WordPieceTokenizer(models.WordPiece(ids, unk_token="[UNK]",
                                                              max_input_chars_per_word=MAX_WORD_BYTES))
        self._tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # no normaliser: `normalize` is that
        self.lower_case = lower_case
        self.cls, self.sep, self.pad, self.unk = (ids[t] for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]"))
        self.max_seq_length, self.with_context = max_seq_length, with_context

    def pieces(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's word-piece ids, no special tokens."""
        texts = [normalize(t, self.lower_case) for t in texts]
        # One at a time, on the calling thread: `encode_batch` hands the texts to a thread pool of
        # its own, and where the caller's cores are busy (the server runs a call a core) the calls
        # spent about a fifth of their time waiting for it; serially, 16 texts take 0.1 ms.
        encodings = [self._tokenizer.encode(t, add_special_tokens=False) for t in texts]
        return [self._long_words_unknown(t, e) if len(t) > MAX_WORD_BYTES // 4 else e.ids
                for t, e in zip(texts, encodings)]

    def _long_words_unknown(self, text: str, encoding) -> list[int]:
        """The ids with each word over MAX_WORD_BYTES one [UNK] (a shorter text has no such word)."""
        ids, words, offsets = encoding.ids, encoding.word_ids, encoding.offsets
        result, start = [], 0
        while start < len(ids):
            end = start + 1
            while end < len(ids) and words[end] == words[start]:
                end += 1
            word = text[offsets[start][0] : offsets[end - 1][1]]
            result += [self.unk] if len(word.encode("utf-8")) > MAX_WORD_BYTES else ids[start:end]
            start = end
        return result

    def encode(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """int32 [batch, longest] arrays, padded to the batch's longest packed text."""
        rows = [self._pack(text_ids, context_ids) for text_ids, context_ids in
                zip(self.pieces(texts), self._contexts(texts, contexts))]
        longest = max((len(ids) for ids, _ in rows), default=2)
        word_ids = np.full((len(rows), longest), self.pad, np.int32)
        type_ids = np.zeros((len(rows), longest), np.int32)
        mask = np.zeros((len(rows), longest), np.int32)
        for row, (ids, types) in enumerate(rows):
            word_ids[row, : len(ids)], type_ids[row, : len(ids)], mask[row, : len(ids)] = ids, types, 1
        return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}

    def _contexts(self, texts: Sequence[str], contexts: Sequence[str] | None) -> list[list[int] | None]:
        if not self.with_context:
            return [None] * len(texts)
        return self.pieces(contexts if contexts is not None else [""] * len(texts))

    def _pack(self, text: list[int], context: list[int] | None) -> tuple[list[int], list[int]]:
        if context is None:
            ids = [self.cls, *text[: self.max_seq_length - 2], self.sep]
            return ids, [0] * len(ids)
        text = text[: self.max_seq_length - 3]
        room = self.max_seq_length - 3 - len(text)
        context = context[len(context) - room:] if room < len(context) else context
        first = [self.cls, *text, self.sep]
        return first + context + [self.sep], [0] * len(first) + [1] * (len(context) + 1)


def normalize(text: str, lower_case: bool) -> str:
    """What TF Text's FastBertTokenizer does before splitting words, where `tokenizers` would differ:
    control and format characters to spaces, punctuation and CJK ideographs set apart with the
    Unicode tables of this Python (`tokenizers`' are older); for an uncased vocabulary, default-ignorable
    characters dropped, compatibility decomposition, case folding ("ß" is "ss"), no accents."""
    if text.isascii() and text.isprintable():
        return text.lower() if lower_case else text
    if lower_case:
        text = _IGNORABLE.sub("", text)
    text = _CONTROL.sub(" ", text)
    if lower_case:
        folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
        text = "".join(c for c in folded if unicodedata.category(c) != "Mn")
    return _SEPARATE.sub(r" \g<0> ", text) if not text.isascii() else text


def characters(*categories: str) -> str:
    """Every code point of these Unicode categories, escaped for a regex character class."""
    return "".join(re.escape(chr(c)) for c in range(0x110000)
                   if unicodedata.category(chr(c)) in categories and not 0xD800 <= c < 0xE000)


_CONTROL = re.compile(f"[{characters('Cc', 'Cf')}]")
# The CJK ideographs BERT splits one a word, with every punctuation character: where `tokenizers`
# already splits them, the spaces change nothing.
_SEPARATE = re.compile(f"[{characters('Pc', 'Pd', 'Ps', 'Pe', 'Pi', 'Pf', 'Po')}"
                       "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ceaf\U0002f800-\U0002fa1f]")
# Unicode's default-ignorable code points (zero-width and bidi marks, soft hyphen, Hangul fillers,
# variation selectors, tags) are removed before an uncased vocabulary's folding; other control and
# format characters become spaces.
_IGNORABLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
                        "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
                        "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")
