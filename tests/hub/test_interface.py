"""The tiny model honours the official TF Hub BERT interfaces, loaded the way users load them."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text  # noqa: F401

SENTENCES = tf.constant(["Hello world!", "how are you doing today", "I lost my card"])


@pytest.fixture(scope="module")
def preprocessor(tiny_hub):
    return hub.load(str(tiny_hub / "preprocessor"))


@pytest.fixture(scope="module")
def encoder(tiny_hub):
    return hub.load(str(tiny_hub / "encoder"))


def test_preprocessor_call_gives_three_int32_inputs_at_the_default_length(preprocessor):
    inputs = preprocessor(SENTENCES)
    assert sorted(inputs) == ["input_mask", "input_type_ids", "input_word_ids"]
    for tensor in inputs.values():
        assert tensor.dtype == tf.int32 and tensor.shape == (3, 128)
    special = preprocessor.tokenize.get_special_tokens_dict()
    ids = inputs["input_word_ids"].numpy()
    assert (ids[:, 0] == special["start_of_sequence_id"].numpy()).all()


def test_tokenize_gives_ragged_words_of_pieces(preprocessor):
    tokens = preprocessor.tokenize(SENTENCES)
    assert isinstance(tokens, tf.RaggedTensor) and tokens.shape.rank == 3 and tokens.dtype == tf.int32
    assert tokens.row_lengths().numpy().tolist() == [3, 5, 4]  # words; "!" is a word of its own


def test_tokenize_keeps_a_word_split_into_pieces_together(preprocessor):
    from sft.hub.export import tiny_vocab

    tokens = preprocessor.tokenize(tf.constant(["zqx card", "", "¿ card"])).to_list()
    unk = tiny_vocab().index("[UNK]")
    zqx, card = tokens[0]
    assert len(zqx) == 3 and len(card) == 1  # z ##q ##x: one word of three pieces
    assert tokens[1] == []  # no words at all
    assert tokens[2] == [[unk], card]  # a character outside the vocabulary is an unknown word


def test_bert_pack_inputs_two_segments_round_robin(preprocessor):
    special = {k: int(v) for k, v in preprocessor.tokenize.get_special_tokens_dict().items()}
    a = tf.ragged.constant([[[10], [11], [12], [13]]], dtype=tf.int32)
    b = tf.ragged.constant([[[20], [21]]], dtype=tf.int32)
    packed = preprocessor.bert_pack_inputs([a, b], seq_length=7)
    cls, sep, pad = special["start_of_sequence_id"], special["end_of_segment_id"], special["padding_id"]
    # 7 - 3 specials leaves 4 pieces, taken round-robin: a0 b0 a1 b1
    assert packed["input_word_ids"].numpy().tolist() == [[cls, 10, 11, sep, 20, 21, sep]]
    assert packed["input_type_ids"].numpy().tolist() == [[0, 0, 0, 0, 1, 1, 1]]
    longer = preprocessor.bert_pack_inputs([a], seq_length=tf.constant(9))
    assert longer["input_word_ids"].numpy().tolist() == [[cls, 10, 11, 12, 13, sep, pad, pad, pad]]
    assert longer["input_mask"].numpy().tolist() == [[1, 1, 1, 1, 1, 1, 0, 0, 0]]


def test_encoder_outputs_and_attributes(encoder, preprocessor):
    inputs = {k: v[:, :16] for k, v in preprocessor(SENTENCES).items()}  # any length works
    out = encoder(inputs, training=False)
    assert out["pooled_output"].shape == (3, 32) and out["sequence_output"].shape == (3, 16, 32)
    assert len(out["encoder_outputs"]) == 2
    np.testing.assert_array_equal(out["encoder_outputs"][-1], out["sequence_output"])
    np.testing.assert_array_equal(out["default"], out["pooled_output"])
    assert encoder.vocab_file.asset_path.numpy().decode().endswith("vocab.txt")
    assert bool(encoder.do_lower_case.numpy())
    assert len(encoder.trainable_variables) > 0 and encoder.regularization_losses == []


def test_dropout_only_when_training(encoder, preprocessor):
    inputs = preprocessor(SENTENCES)
    eval_a, eval_b = (encoder(inputs, training=False)["pooled_output"] for _ in range(2))
    train_a, train_b = (encoder(inputs, training=True)["pooled_output"] for _ in range(2))
    np.testing.assert_array_equal(eval_a, eval_b)
    assert not np.allclose(train_a, train_b)


def test_keras_layer_fine_tunes_every_encoder_variable(tiny_hub, preprocessor):
    layer = hub.KerasLayer(str(tiny_hub / "encoder"), trainable=True)
    inputs = preprocessor(SENTENCES)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(inputs, training=True)["pooled_output"] ** 2)
    gradients = tape.gradient(loss, layer.trainable_variables)
    assert len(layer.trainable_variables) == 2 * 16 + 7  # 16 a layer, 7 for embeddings and pooler
    assert all(g is not None for g in gradients)
