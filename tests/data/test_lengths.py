from sft.data.example import Example
from sft.data.lengths import WordPieceCounter, length_report, percentiles

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "my", "card", "was", "stole", "##n", "!", ",", "cafe", "hi"]


def write_vocab(path, tokens=VOCAB):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def test_word_pieces_of_an_uncased_vocabulary(tmp_path):
    count = WordPieceCounter(write_vocab(tmp_path / "vocab.txt"))
    assert count.lower_case
    assert count("My card was STOLEN!") == 6  # my card was stole ##n !
    assert count("Café, hi") == 3  # accents stripped; punctuation is its own piece
    assert count("xyzzy") == 1  # an unknown word is one [UNK]


def test_a_vocabulary_with_capitals_is_cased(tmp_path):
    count = WordPieceCounter(write_vocab(tmp_path / "vocab.txt", VOCAB + ["Card"]))
    assert not count.lower_case
    assert count("Card card CARD") == 3


def test_lengths_of_texts_and_of_what_the_model_reads(tmp_path):
    examples = [Example("a b c", "x"), Example("a", "x", context=["b c", "d"])]
    report = length_report(examples, None, "whitespace_tokens")
    assert report["unit"] == "whitespace_tokens"
    assert report["text"]["max"] == 3
    assert report["packed"]["max"] == 1 + 3 + 3  # [CLS] a [SEP] b c d [SEP]


def test_nearest_rank_percentiles():
    assert percentiles(list(range(1, 101))) == {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "max": 100}
    assert percentiles([]) == {"p50": 0, "p90": 0, "p95": 0, "p99": 0, "max": 0}
