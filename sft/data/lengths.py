"""Lengths for the prepare report: word pieces of the model's own vocabulary when it is on disk,
else white-space tokens. Pure Python; TensorFlow stays out of `sft prepare`."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

from sft.data.example import Example

PERCENTILES = (50, 90, 95, 99)
_SPECIAL = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


class WordPieceCounter:
    """How many word pieces BERT's tokeniser makes of a text: basic tokenisation (white space,
    punctuation, CJK characters; lower case and accents stripped for an uncased vocabulary),
    then greedy longest-match WordPiece. Counts are cached by white-space token."""

    def __init__(self, vocab_file: str | Path):
        self.vocab = set(Path(vocab_file).read_text(encoding="utf-8").splitlines())
        # An uncased vocabulary has no capital letters outside its special tokens.
        self.lower_case = not any(t != t.lower() for t in self.vocab if t not in _SPECIAL)
        self._cache: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        count = 0
        for token in text.split():
            pieces = self._cache.get(token)
            if pieces is None:
                pieces = self._cache[token] = sum(self._pieces(word) for word in self._words(token))
            count += pieces
        return count

    def _words(self, token: str) -> list[str]:
        if self.lower_case:
            token = "".join(c for c in unicodedata.normalize("NFD", token.lower()) if unicodedata.category(c) != "Mn")
        words, current = [], ""
        for ch in token:
            if _is_punctuation(ch) or _is_cjk(ch):
                words += [current, ch] if current else [ch]
                current = ""
            elif unicodedata.category(ch)[0] != "C":
                current += ch
        return words + [current] if current else words

    def _pieces(self, word: str) -> int:
        if len(word) > 200:
            return 1  # [UNK]
        count, start = 0, 0
        while start < len(word):
            end = len(word)
            while end > start and (("##" if start else "") + word[start:end]) not in self.vocab:
                end -= 1
            if end == start:
                return 1  # the whole word is [UNK]
            count, start = count + 1, end
        return count


def length_report(examples: Sequence[Example], count: Callable[[str], int] | None, unit: str) -> dict:
    """Percentiles of text lengths, and of packed lengths ([CLS] text [SEP] context [SEP]) as the model sees them."""
    count = count or (lambda text: len(text.split()))
    known: dict[str, int] = {}  # a turn is counted as a text and again as context of the next turns

    def measure(s: str) -> int:
        n = known.get(s)
        if n is None:
            n = known[s] = count(s)
        return n

    text, packed = [], []
    for e in examples:
        n = measure(e.text)
        text.append(n)
        packed.append(n + 2 + (sum(measure(c) for c in e.context) + 1 if e.context else 0))
    return {"unit": unit, "text": percentiles(text), "packed": percentiles(packed)}


def percentiles(values: list[int]) -> dict[str, int]:
    """Nearest-rank percentiles and the maximum; zeros for no values."""
    ordered = sorted(values)
    if not ordered:
        return {**{f"p{p}": 0 for p in PERCENTILES}, "max": 0}
    return {**{f"p{p}": ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] for p in PERCENTILES},
            "max": ordered[-1]}


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or unicodedata.category(ch)[0] == "P"


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
                                             (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))
