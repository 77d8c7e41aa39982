"""Independent references for parity tests: BERT's forward pass in NumPy on open-format
tensor names, and BERT's original WordPiece tokenisation in plain Python."""

from __future__ import annotations

import math
import unicodedata

import numpy as np


def bert_forward(t: dict[str, np.ndarray], config: dict, ids, mask, type_ids):
    """(sequence_output, pooled_output) of a BertModel, from tensors named as in model.safetensors."""
    ids, mask, type_ids = (np.asarray(a) for a in (ids, mask, type_ids))

    def linear(x, name):
        return x @ t[f"{name}.weight"].T + t[f"{name}.bias"]

    def norm(x, name):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + config["layer_norm_eps"]) * t[f"{name}.weight"] + t[f"{name}.bias"]

    def gelu(x):
        return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))

    seq = ids.shape[1]
    x = (t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:seq]
         + t["embeddings.token_type_embeddings.weight"][type_ids])
    x = norm(x, "embeddings.LayerNorm").astype(np.float64)
    heads = config["num_attention_heads"]
    size = config["hidden_size"] // heads
    bias = (1.0 - mask[:, None, None, :]) * -10000.0
    for n in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{n}"

        def split(h):
            return h.reshape(h.shape[0], seq, heads, size).transpose(0, 2, 1, 3)

        q, k, v = (split(linear(x, f"{p}.attention.self.{m}")) for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(x.shape)
        x = norm(x + linear(context, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
        x = norm(x + linear(gelu(linear(x, f"{p}.intermediate.dense")), f"{p}.output.dense"), f"{p}.output.LayerNorm")
    pooled = np.tanh(linear(x[:, 0], "pooler.dense"))
    return x, pooled


def wordpiece_ids(text: str, vocab: list[str], lower_case: bool = True) -> list[int]:
    """BERT's reference tokenisation: basic (clean, CJK, lower + strip accents, punctuation) then WordPiece."""
    index = {token: i for i, token in enumerate(vocab)}
    ids = []
    for word in _basic_tokens(text, lower_case):
        if len(word) > 200:
            ids.append(index["[UNK]"])
            continue
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = ("##" if start else "") + word[start:end]
                if piece in index:
                    break
                end -= 1
            if end == start:
                pieces = [index["[UNK]"]]
                break
            pieces.append(index[piece])
            start = end
        ids.extend(pieces)
    return ids


def _basic_tokens(text: str, lower_case: bool) -> list[str]:
    chars = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
            continue
        if _is_cjk(cp):
            chars.append(f" {ch} ")
        else:
            chars.append(" " if ch.isspace() else ch)
    words = []
    for token in "".join(chars).split():
        if lower_case:
            token = "".join(c for c in unicodedata.normalize("NFD", token.lower()) if unicodedata.category(c) != "Mn")
        current = ""
        for ch in token:
            if _is_punctuation(ch):
                if current:
                    words.append(current)
                words.append(ch)
                current = ""
            else:
                current += ch
        if current:
            words.append(current)
    return words


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
                                               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)])
