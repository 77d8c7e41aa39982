"""A client for TF Serving that tokenises on its own side: stock TF Serving lacks TF Text's ops,
so it serves an `sft export` through the `classify_ids` signature, which takes token ids.

    python scripts/tf_serving_client.py --url http://localhost:8501/v1/models/NAME \\
        --export models/NAME/1 "I lost my card" "how do I top up?"

It reads the export's vocabulary (`assets.extra/vocab.txt`) and settings (`assets.extra/sft.json`),
tokenises each text with Hugging Face `tokenizers` (BERT's WordPiece, as the TF Hub preprocessor
inside `serving_default` does), posts the ids to TF Serving's REST predict API and prints one JSON
line a text: label, confidence, class id. Needs only `tokenizers` and the standard library; works
unchanged against `sft serve`.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

from tokenizers import BertWordPieceTokenizer, normalizers


def tokenizer(export: Path) -> tuple[BertWordPieceTokenizer, dict]:
    extra = export / "assets.extra"
    settings = json.loads((extra / "sft.json").read_text(encoding="utf-8"))
    vocab = (extra / "vocab.txt").read_text(encoding="utf-8").splitlines()
    specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    uncased = all(token == token.lower() for token in vocab if token not in specials)
    wordpiece = BertWordPieceTokenizer(str(extra / "vocab.txt"), lowercase=uncased, strip_accents=uncased,
                                       clean_text=True, handle_chinese_chars=True)
    # The export normalises text with NFKC before its tokeniser; so does this client.
    wordpiece.normalizer = normalizers.Sequence([normalizers.NFKC(), wordpiece.normalizer])
    return wordpiece, settings


def instances(texts: list[str], wordpiece: BertWordPieceTokenizer, settings: dict) -> list[dict]:
    """`[CLS] text [SEP]` (and an empty context segment, `[SEP]`, for a model trained with context),
    cut to the model's max_seq_length and padded to the longest text of the request."""
    max_length = settings["config"]["model"]["max_seq_length"]
    with_context = settings["config"]["data"]["context_turns"] > 0
    cls, sep, pad = (wordpiece.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    rows = []
    for encoding in wordpiece.encode_batch(texts, add_special_tokens=False):
        ids = [cls, *encoding.ids[: max_length - 2 - with_context], sep]
        rows.append((ids + [sep] * with_context, [0] * len(ids) + [1] * with_context))
    longest = max(len(ids) for ids, _ in rows)
    return [{"input_word_ids": ids + [pad] * (longest - len(ids)),
             "input_mask": [1] * len(ids) + [0] * (longest - len(ids)),
             "input_type_ids": types + [0] * (longest - len(types))} for ids, types in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the model's URL, http://HOST:PORT/v1/models/NAME")
    parser.add_argument("--export", required=True, type=Path, help="the folder `sft export` wrote")
    parser.add_argument("texts", nargs="+")
    args = parser.parse_args()
    wordpiece, settings = tokenizer(args.export)
    body = json.dumps({"signature_name": "classify_ids", "instances": instances(args.texts, wordpiece, settings)})
    request = urllib.request.Request(args.url + ":predict", body.encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        predictions = json.load(response)["predictions"]
    for text, answer in zip(args.texts, predictions):
        print(json.dumps({"text": text, "label": answer["label"], "confidence": answer["confidence"],
                          "class_id": answer["class_id"]}, ensure_ascii=False))


if __name__ == "__main__":
    main()
