"""Write TF Hub-format SavedModels: the encoder and its preprocessor, from weights or at random.

`export_checkpoint` converts a BERT checkpoint in the common open format
(`config.json`, `model.safetensors`, `vocab.txt`); `export_random` writes an
untrained encoder of any shape (the tiny test model). Both go through the same
`BertEncoder`, so the tests' model is the real one.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from sft.errors import HubError
from sft.files import atomic_dir, is_nonempty_dir
from sft.hub.encoder import BertConfig, BertEncoder, input_signature, variable_shapes
from sft.hub.preprocessor import BertPreprocessor, read_vocab


def export_checkpoint(checkpoint_dir: str | Path, out: str | Path, default_seq_length: int = 128,
                      random_init: bool = False) -> Path:
    """Convert `config.json` + `model.safetensors` + `vocab.txt` into OUT/encoder and OUT/preprocessor.

    With `random_init` the weights are left out: the same shape and vocabulary,
    untrained, to measure what pretraining brings.
    """
    src = Path(checkpoint_dir)
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        if not (src / name).is_file():
            raise HubError(f"checkpoint folder '{src}' lacks {name} (expected config.json, model.safetensors, vocab.txt)")
    config = BertConfig.from_hf_json(src / "config.json")
    vocab = read_vocab(src / "vocab.txt")
    if len(vocab) != config.vocab_size:
        raise HubError(
            f"vocab.txt has {len(vocab)} tokens but config.json says vocab_size {config.vocab_size}: "
            "they must come from the same checkpoint"
        )
    weights = None if random_init else _encoder_weights_from_open_format(src / "model.safetensors", config)
    return _export(out, BertEncoder(config, weights), src / "vocab.txt", _do_lower_case(src), default_seq_length)


def export_random(config: BertConfig, vocab_file: str | Path, out: str | Path, seed: int = 0,
                  do_lower_case: bool = True, default_seq_length: int = 128) -> Path:
    """An untrained encoder of the given shape over `vocab_file`, e.g. the tiny test model."""
    vocab = read_vocab(vocab_file)
    if len(vocab) != config.vocab_size:
        raise HubError(f"vocabulary has {len(vocab)} tokens, config says vocab_size {config.vocab_size}")
    return _export(out, BertEncoder(config, seed=seed), Path(vocab_file), do_lower_case, default_seq_length)


def _export(out, encoder: BertEncoder, vocab_file: Path, do_lower_case: bool, default_seq_length: int) -> Path:
    if is_nonempty_dir(out):
        raise HubError(f"'{out}' already exists and is not empty: choose another --out or remove it")
    with atomic_dir(out) as tmp:
        save_encoder(encoder, vocab_file, do_lower_case, tmp / "encoder")
        preprocessor = BertPreprocessor(vocab_file, lower_case=do_lower_case, default_seq_length=default_seq_length)
        save_preprocessor(preprocessor, tmp / "preprocessor")
        (tmp / "bert_config.json").write_text(json.dumps(encoder.config.to_dict(), indent=2) + "\n")
    return Path(out)


def save_encoder(encoder: BertEncoder, vocab_file: Path, do_lower_case: bool, out: Path) -> None:
    # The root must be a plain trackable: `tf.Module.trainable_variables` is a
    # read-only property, and hub.KerasLayer needs these as saved attributes.
    root = tf.train.Checkpoint()
    root.encoder = encoder

    @tf.function
    def call(inputs, training=False):
        return encoder(inputs, training=training)

    spec = input_signature()
    for training in (False, True):  # both traced, or `training=True` fails after loading
        call.get_concrete_function(spec, training=training)
    root.__call__ = call
    root.variables = list(encoder.variables)
    root.trainable_variables = list(encoder.trainable_variables)
    root.regularization_losses = []
    root.vocab_file = tf.saved_model.Asset(str(vocab_file))
    root.do_lower_case = tf.Variable(do_lower_case, trainable=False, name="do_lower_case")
    tf.saved_model.save(root, str(out))


def save_preprocessor(preprocessor: BertPreprocessor, out: Path) -> None:
    root = tf.train.Checkpoint()
    root.preprocessor = preprocessor
    strings = tf.TensorSpec([None], tf.string)
    root.__call__ = tf.function(preprocessor.__call__, input_signature=[strings])
    # `tokenize` is an object, not a bare function: only an object carries the
    # `get_special_tokens_dict` attribute through saving.
    root.tokenize = tf.train.Checkpoint()
    root.tokenize.__call__ = tf.function(preprocessor.tokenize, input_signature=[strings])
    root.tokenize.get_special_tokens_dict = tf.function(preprocessor.get_special_tokens_dict, input_signature=[])
    root.bert_pack_inputs = tf.function(preprocessor.bert_pack_inputs)
    seq_length = tf.TensorSpec([], tf.int32)
    for segments in (1, 2):
        for ragged_rank in (1, 2):  # tokenize's [b, (words), (pieces)] or flat [b, (pieces)]
            spec = tf.RaggedTensorSpec([None] * (ragged_rank + 1), tf.int32, ragged_rank=ragged_rank)
            root.bert_pack_inputs.get_concrete_function([spec] * segments, seq_length)
    tf.saved_model.save(root, str(out))


def _do_lower_case(src: Path) -> bool:
    try:
        return bool(json.loads((src / "tokenizer_config.json").read_text())["do_lower_case"])
    except (OSError, ValueError, KeyError):
        return True  # BERT's own default


def _encoder_weights_from_open_format(path: Path, config: BertConfig) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise HubError(f"cannot read '{path}': {e}") from None
    prefix = "bert." if any(k.startswith("bert.") for k in tensors) else ""
    shapes = variable_shapes(config)
    weights = {}
    for name, (source, transpose) in _open_format_names(config).items():
        key = prefix + source
        if key not in tensors:
            raise HubError(f"checkpoint '{path}' lacks the tensor '{key}'")
        value = tensors[key].T if transpose else tensors[key]
        if value.shape != shapes[name]:
            raise HubError(
                f"checkpoint tensor '{key}' has shape {tensors[key].shape}, which does not fit "
                f"the config.json model (expected {shapes[name][::-1] if transpose else shapes[name]})"
            )
        weights[name] = value
    return weights


def _open_format_names(config: BertConfig) -> dict[str, tuple[str, bool]]:
    """Encoder variable -> (open-format tensor name, stored as [out, in] so transpose)."""
    names = {
        "word_embeddings/embeddings": ("embeddings.word_embeddings.weight", False),
        "position_embedding/embeddings": ("embeddings.position_embeddings.weight", False),
        "type_embeddings/embeddings": ("embeddings.token_type_embeddings.weight", False),
        "embeddings/layer_norm/gamma": ("embeddings.LayerNorm.weight", False),
        "embeddings/layer_norm/beta": ("embeddings.LayerNorm.bias", False),
        "pooler_transform/kernel": ("pooler.dense.weight", True),
        "pooler_transform/bias": ("pooler.dense.bias", False),
    }
    for n in range(config.num_layers):
        ours, theirs = f"transformer/layer_{n}", f"encoder.layer.{n}"
        for dense, source in {
            "self_attention/query": "attention.self.query",
            "self_attention/key": "attention.self.key",
            "self_attention/value": "attention.self.value",
            "self_attention/attention_output": "attention.output.dense",
            "intermediate": "intermediate.dense",
            "output": "output.dense",
        }.items():
            names[f"{ours}/{dense}/kernel"] = (f"{theirs}.{source}.weight", True)
            names[f"{ours}/{dense}/bias"] = (f"{theirs}.{source}.bias", False)
        for norm, source in {
            "self_attention_layer_norm": "attention.output.LayerNorm",
            "output_layer_norm": "output.LayerNorm",
        }.items():
            names[f"{ours}/{norm}/gamma"] = (f"{theirs}.{source}.weight", False)
            names[f"{ours}/{norm}/beta"] = (f"{theirs}.{source}.bias", False)
    return names


TINY_CONFIG = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position=128)
_TINY_WORDS = """
a about account address again all am an and any app are at balance bank be book booking but buy by
call can cancel card change charge check code could credit date day debit delivery did do does don
email error fee find flight for from get give go good have hello help hi how i in is it just know
last like list lost make me money more my need new no not now of on one open or order out password
pay payment phone please problem reset refund right room rule see send service set should show sign
so some that the there this time to today top transfer up update want was we what when where which
why will with work would wrong yes yet you your yeah okay ok thanks thank bye great sorry sure well
really sounds oh hey
""".split()


def tiny_vocab() -> list[str]:
    """Specials, single characters and their `##` continuations, and a few hundred chatbot words."""
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789") + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~£€")
    tokens = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
        *chars, *(f"##{c}" for c in chars if c.isalnum()), *sorted(_TINY_WORDS),
    ]
    return list(dict.fromkeys(tokens))  # one id a token: "a" and "i" are both characters and words


def export_tiny(out: str | Path, seed: int = 0) -> Path:
    """The tiny random TF Hub-format BERT used by the tests and CI smoke runs."""
    with tempfile.TemporaryDirectory() as scratch:
        vocab_file = Path(scratch) / "vocab.txt"
        vocab = tiny_vocab()
        vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        return export_random(BertConfig(vocab_size=len(vocab), **TINY_CONFIG), vocab_file, out, seed=seed)
