"""`sft export`: a trained run as one SavedModel a server loads with TensorFlow alone.

Signatures:
- `serving_default(text: string[batch])`: the TF Hub preprocessor inside; text is
  normalised in the graph the way `sft prepare` cleans it by default (NFKC,
  control and zero-width characters removed, white space collapsed).
- `classify_ids(input_word_ids, input_mask, input_type_ids: int32[batch, seq])`:
  for servers without TF Text's ops (stock TF Serving); tokenise elsewhere.

Both return `label` (string[batch], the fallback label where the confidence is
under the run's out-of-scope threshold), `probabilities` (float32[batch, classes]),
`confidence` (float32[batch]) and `class_id` (int32[batch], -1 for the fallback).
The label map travels inside as `assets/labels.txt`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import tensorflow as tf

from sft.errors import RunDirError
from sft.files import atomic_dir, is_nonempty_dir
from sft.hub.encoder import input_signature
from sft.trained import TrainedRun


class ServingModule(tf.Module):
    def __init__(self, trained: TrainedRun, labels_file: Path, threshold: float | None, fallback: str | None):
        super().__init__(name="sft_classifier")
        self.model = trained.engine.model
        self.preprocessor = trained.engine.preprocessor
        self.max_seq_length = trained.config.model.max_seq_length
        self.labels_file = tf.saved_model.Asset(str(labels_file))
        self.labels = tf.constant(trained.labels)
        self.threshold = tf.constant(threshold if threshold is not None else 0.0, tf.float32)
        self.fallback = tf.constant(fallback or "")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        text = tf.strings.regex_replace(tf_text_normalize(text), r"[\p{Cc}\p{Cf}]", " ")
        text = tf.strings.strip(tf.strings.regex_replace(text, r"\s+", " "))
        tokens = self.preprocessor.tokenize(text).merge_dims(-2, -1)[:, : self.max_seq_length - 2]
        longest = tf.reduce_max(tf.concat([tokens.row_lengths(), [0]], axis=0)) + 2
        features = self.preprocessor.bert_pack_inputs([tokens], seq_length=tf.cast(longest, tf.int32))
        return self._classify(features)

    @tf.function(input_signature=[input_signature()])
    def serve_ids(self, features):
        return self._classify(features)

    def _classify(self, features):
        probabilities = tf.nn.softmax(tf.cast(self.model(features, training=False), tf.float32))
        confidence = tf.reduce_max(probabilities, axis=-1)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        in_scope = confidence >= self.threshold
        return {
            "label": tf.where(in_scope, tf.gather(self.labels, class_id), self.fallback),
            "class_id": tf.where(in_scope, class_id, -1),
            "probabilities": probabilities,
            "confidence": confidence,
        }


def tf_text_normalize(text):
    import tensorflow_text as tf_text

    return tf_text.normalize_utf8(text, "NFKC")


def export(trained: TrainedRun, out: str | Path, threshold: float | None = None, fallback: str | None = None,
           overwrite: bool = False) -> Path:
    """Write the serving SavedModel to `out` (atomically: a failed export leaves nothing behind)."""
    if is_nonempty_dir(out) and not overwrite:
        raise RunDirError(f"'{out}' already exists: choose another --out or pass --overwrite")
    with tempfile.TemporaryDirectory() as scratch, atomic_dir(out, replace=overwrite) as tmp:
        labels_file = Path(scratch) / "labels.txt"
        labels_file.write_text("".join(label + "\n" for label in trained.labels), encoding="utf-8")
        module = ServingModule(trained, labels_file, threshold, fallback)
        signatures = {
            "serving_default": module.serve_text.get_concrete_function(),
            "classify_ids": module.serve_ids.get_concrete_function(),
        }
        tf.saved_model.save(module, str(tmp), signatures=signatures)
    return Path(out)
