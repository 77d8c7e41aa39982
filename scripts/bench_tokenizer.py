"""The bundled preprocessor's tokenisation (FastBertTokenizer) against TF Text's BertTokenizer,
which TF Hub's BERT preprocessors use, on the same vocabulary.

    python scripts/bench_tokenizer.py [--cased]

Checks that both give the same ids and the same words ([batch, (words), (pieces)])
on every text of the shared Banking77 and MELD train splits, then times both on
the Banking77 texts in chunks of 4,096 (as `sft.inputs.encode` sends them),
each traced as a graph, alternated, in one process; the best of three passes each.
"""

from __future__ import annotations

import argparse
import csv
import time

import bench

CHUNK = 4096
SPLITS = {"banking77": ("banking77/train.csv", "text"), "meld": ("meld/train_sent_emo.csv", "Utterance")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cased", action="store_true", help="no lower-casing (different on no-break spaces)")
    args = parser.parse_args()

    import sft  # noqa: F401  (tf-keras before TensorFlow)
    import tensorflow as tf
    import tensorflow_text as text

    from sft.hub import resolve
    from sft.hub.preprocessor import BertPreprocessor

    vocab_file = f"{resolve.resolve_handle('bundled:minilm-l6-uncased', 'preprocessor')}/assets/vocab.txt"
    ours = BertPreprocessor(vocab_file, lower_case=not args.cased)
    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.TextFileInitializer(vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                      tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER),
        num_oov_buckets=1,
    )
    reference = text.BertTokenizer(table, token_out_type=tf.int32, lower_case=not args.cased, unknown_token="[UNK]")

    texts = {}
    for name, (path, column) in SPLITS.items():
        with open(bench.BANKING77.parent / path, newline="", encoding="utf-8") as f:
            texts[name] = [row[column] for row in csv.DictReader(f)]
        a = reference.tokenize(tf.constant(texts[name])).to_list()
        b = ours.tokenize(tf.constant(texts[name])).to_list()
        differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        print(f"{name}: {len(texts[name]) - len(differ)} of {len(texts[name])} texts tokenised identically"
              + (f"; first difference: {texts[name][differ[0]]!r}" if differ else ""))

    banking = texts["banking77"]
    timings = {"BertTokenizer": [], "sft (FastBertTokenizer)": []}
    # As graphs, the way a saved preprocessor runs them (eagerly, ragged bookkeeping dominates).
    strings = tf.TensorSpec([None], tf.string)
    tokenizers = {"BertTokenizer": tf.function(reference.tokenize, input_signature=[strings]),
                  "sft (FastBertTokenizer)": tf.function(ours.tokenize, input_signature=[strings])}
    for _ in range(3):
        for name, tokenize in tokenizers.items():
            start = time.perf_counter()
            for i in range(0, len(banking), CHUNK):
                tokenize(tf.constant(banking[i : i + CHUNK])).merge_dims(-2, -1).flat_values.numpy()
            timings[name].append(len(banking) / (time.perf_counter() - start))
    for name, rates in timings.items():
        print(f"{name}: {max(rates):,.0f} texts/s (best of {', '.join(f'{r:,.0f}' for r in rates)})")


if __name__ == "__main__":
    main()
