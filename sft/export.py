"""`sft export`: a trained run as one SavedModel a server loads with TensorFlow alone.

Signatures:
- `serving_default(text: string[batch])`: the TF Hub preprocessor inside; text is
  normalised in the graph the way `sft prepare` cleans it by default (NFKC,
  control and zero-width characters removed, white space collapsed).
- `classify_dialogue(text, context: string[batch])`, for a model trained with
  context: `context` is the previous turns joined as `sft.data.dialogue.context_segment`
  joins them ("" for a dialogue's opener).
- `classify_ids(input_word_ids, input_mask, input_type_ids: int32[batch, seq])`:
  for servers without TF Text's ops (stock TF Serving); tokenise elsewhere.

Each returns `label` (string[batch], the fallback label where the confidence is
under the run's out-of-scope threshold), `probabilities` (float32[batch, classes]),
`confidence` (float32[batch]) and `class_id` (int32[batch], -1 for the fallback).

Beside the SavedModel, in TF Serving's place for extra files (`assets.extra/`):
`sft.json` (labels, fallback, the run's config, which weights) and `vocab.txt`
(for clients that tokenise themselves). A TF Serving model folder is
`models/NAME/VERSION`: `sft export --out models/NAME/1` writes one.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from sft import __version__, inputs
from sft.errors import RunDirError, SftError
from sft.exported import ExportInfo, weights_stamp
from sft.files import atomic_dir, is_nonempty_dir, write_json
from sft.hub.encoder import input_signature
from sft.rundir import RunDir
from sft.trained import TrainedRun, load_trained

_TEXT = tf.TensorSpec([None], tf.string, name="text")
_CONTEXT = tf.TensorSpec([None], tf.string, name="context")


class ServingModule(tf.Module):
    def __init__(self, trained: TrainedRun, labels_file: Path):
        super().__init__(name="sft_classifier")
        self.model = trained.engine.model
        self.preprocessor = trained.engine.preprocessor
        self.max_seq_length = trained.config.model.max_seq_length
        self.with_context = trained.config.data.context_turns > 0
        self.labels_file = tf.saved_model.Asset(str(labels_file))
        self.labels = tf.constant(trained.labels)
        self.threshold = tf.constant(trained.fallback.threshold, tf.float32)
        self.fallback = tf.constant(trained.fallback.label or "")

    @tf.function(input_signature=[_TEXT])
    def serve_text(self, text):
        context = tf.fill(tf.shape(text), "") if self.with_context else None
        return self._classify(self._features(text, context))

    @tf.function(input_signature=[_TEXT, _CONTEXT])
    def serve_dialogue(self, text, context):
        return self._classify(self._features(text, context))

    @tf.function(input_signature=[input_signature()])
    def serve_ids(self, features):
        return self._classify(features)

    def _features(self, text, context):
        context_ids = self._tokenize(context) if context is not None else None
        return inputs.pack_batch(self.preprocessor, self._tokenize(text), context_ids, self.max_seq_length)

    def _tokenize(self, text):
        text = tf.strings.regex_replace(tf_text_normalize(text), r"[\p{Cc}\p{Cf}]", " ")
        text = tf.strings.strip(tf.strings.regex_replace(text, r"\s+", " "))
        return self.preprocessor.tokenize(text).merge_dims(-2, -1)

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


def export(trained: TrainedRun, out: str | Path, which: str = "best", overwrite: bool = False) -> Path:
    """Write the serving SavedModel to `out` (atomically: a failed export leaves nothing behind)."""
    if is_nonempty_dir(out) and not overwrite:
        raise RunDirError(f"'{out}' already exists: choose another --out or pass --overwrite")
    with tempfile.TemporaryDirectory() as scratch, atomic_dir(out, replace=overwrite) as tmp:
        labels_file = Path(scratch) / "labels.txt"
        labels_file.write_text("".join(label + "\n" for label in trained.labels), encoding="utf-8")
        module = ServingModule(trained, labels_file)
        signatures = {
            "serving_default": module.serve_text.get_concrete_function(),
            "classify_ids": module.serve_ids.get_concrete_function(),
        }
        if module.with_context:
            signatures["classify_dialogue"] = module.serve_dialogue.get_concrete_function()
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        extra = ExportInfo.folder(tmp)
        extra.mkdir()
        if trained.vocab:
            shutil.copyfile(trained.vocab, extra / "vocab.txt")
        write_json(extra / ExportInfo.FILE, {
            "sft_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "labels": trained.labels,
            "fallback": {"label": trained.fallback.label, "threshold": trained.fallback.threshold},
            "signatures": sorted(signatures),
            "source": weights_stamp(trained.run, which) if trained.run else {},
            "config": trained.config.to_dict(),
        })
    return Path(out)


def export_run(run: RunDir, which: str = "best") -> Path:
    """The run's own export (`RUN/export/WHICH`), written once, and again when its weights or
    fallback change."""
    folder = run.export_dir(which)
    try:
        if ExportInfo.read(folder).source == weights_stamp(run, which):
            return folder
    except (SftError, OSError):
        pass  # none yet, damaged, or of other weights: export again
    return export(load_trained(run, which), folder, which, overwrite=True)
