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

`export_onnx` (`sft export --format onnx [--quantize int8]`) writes `model.onnx`
(token ids in, logits out; `sft.onnx_graph`) beside the same `assets.extra/`,
for `sft.onnx_model.OnnxModel`. It checks what it wrote on the run's validation
split: the float32 graph against TensorFlow's logits, and an int8 graph's
accuracy against float32's, refusing one that lost more than
`export.max_accuracy_drop`. The figures go into `sft.json`.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from sft import __version__, inputs
from sft.data.dialogue import context_segment
from sft.errors import ExportRefused, RunDirError, SftError
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
        _write_extra(tmp, trained, which, {"signatures": sorted(signatures)})
    return Path(out)


def export_onnx(trained: TrainedRun, out: str | Path, which: str = "best", quantize: bool = False,
                overwrite: bool = False, max_accuracy_drop: float | None = None) -> Path:
    """Write `model.onnx` (int8 with `quantize`) to `out`, checked on the run's validation split;
    an int8 model that lost more than `max_accuracy_drop` (default: the run's
    export.max_accuracy_drop) is refused (`ExportRefused`) and nothing is written."""
    from sft import onnx_graph

    if is_nonempty_dir(out) and not overwrite:
        raise RunDirError(f"'{out}' already exists: choose another --out or pass --overwrite")
    if not trained.vocab:
        raise RunDirError("an ONNX export needs the preprocessor's vocab.txt on disk, which this run's handle lacks")
    if max_accuracy_drop is None:
        max_accuracy_drop = trained.config.export.max_accuracy_drop
    validation = _validation_examples(trained)
    with tempfile.TemporaryDirectory() as scratch, atomic_dir(out, replace=overwrite) as tmp:
        float32 = Path(scratch) / "float32.onnx"
        onnx_graph.convert(trained.engine.model, float32)
        if quantize:
            onnx_graph.quantize_int8(float32, tmp / "model.onnx")
        else:
            shutil.copyfile(float32, tmp / "model.onnx")
        settings = {"quantize": "int8" if quantize else None, "opset": onnx_graph.OPSET,
                    "lower_case": _lower_cases(trained.engine.preprocessor)}
        _write_extra(tmp, trained, which, {"onnx": settings})  # what OnnxModel reads to check the export
        check = _check_onnx(trained, tmp, float32, validation)
        _write_extra(tmp, trained, which, {"onnx": settings | {"check": check}})
        if quantize and check["accuracy_drop"] > max_accuracy_drop:
            raise ExportRefused(
                f"the int8 model scored {check['accuracy']:.4f} on validation against float32's "
                f"{check['float32_accuracy']:.4f}, a drop of {100 * check['accuracy_drop']:.2f} points over "
                f"export.max_accuracy_drop ({100 * max_accuracy_drop:.2f}); export float32 (no --quantize) instead")
    return Path(out)


def _write_extra(folder: Path, trained: TrainedRun, which: str, fields: dict) -> None:
    """`assets.extra/`: sft.json (labels, fallback, config, which weights) and vocab.txt."""
    extra = ExportInfo.folder(folder)
    extra.mkdir(exist_ok=True)
    if trained.vocab:
        shutil.copyfile(trained.vocab, extra / "vocab.txt")
    write_json(extra / ExportInfo.FILE, {
        "sft_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "labels": trained.labels,
        "fallback": {"label": trained.fallback.label, "threshold": trained.fallback.threshold},
        **fields,
        "source": weights_stamp(trained.run, which) if trained.run else {},
        "config": trained.config.to_dict(),
    })


def _lower_cases(preprocessor) -> bool:
    """Whether the preprocessor lower-cases and strips accents: asked of it, whatever its handle."""
    pieces = preprocessor.tokenize(tf.constant(["Ärger AND Arger", "ärger and arger"])).merge_dims(-2, -1)
    return pieces[0].numpy().tolist() == pieces[1].numpy().tolist()


def _validation_examples(trained: TrainedRun):
    from sft.data.example import read_jsonl
    from sft.data.prepared import PreparedDir

    path = PreparedDir(Path(trained.run.run_info()["data_dir"])).split_file("validation") if trained.run else None
    if path is None or not path.is_file():
        raise RunDirError(f"an ONNX export is checked on the run's validation split, and '{path}' is missing: "
                          "run `sft prepare` with the run's config again")
    return read_jsonl(path)


def _check_onnx(trained: TrainedRun, folder: Path, float32: Path, examples) -> dict:
    """On validation: float32 ONNX against TensorFlow (largest logit difference, same token ids), and
    the exported model's accuracy against float32's, with how many top-1 answers changed."""
    from sft.onnx_model import OnnxModel

    exported, reference = OnnxModel(folder), OnnxModel(folder, model_file=float32)
    label_ids = {label: i for i, label in enumerate(trained.labels)}
    gold = np.array([label_ids.get(e.label, -1) for e in examples])
    context_turns = trained.config.data.context_turns
    texts = [e.text for e in examples]
    contexts = [context_segment(e.context, context_turns) for e in examples] if context_turns else None
    largest, float32_top, exported_top = 0.0, [], []
    for start in range(0, len(texts), 64):
        features = exported.tokenizer.encode(texts[start : start + 64], contexts[start : start + 64] if contexts else None)
        expected = trained.engine.model({k: tf.constant(v) for k, v in features.items()}, training=False).numpy()
        got = reference.logits(features)
        largest = max(largest, float(np.abs(got - expected).max()))
        float32_top.append(got.argmax(-1))
        exported_top.append(exported.logits(features).argmax(-1))
    float32_top, exported_top = np.concatenate(float32_top), np.concatenate(exported_top)
    float32_accuracy, accuracy = float(np.mean(float32_top == gold)), float(np.mean(exported_top == gold))
    return {"split": "validation", "examples": len(examples),
            "max_logit_difference_float32_vs_tensorflow": largest,
            "float32_accuracy": float32_accuracy, "accuracy": accuracy,
            "accuracy_drop": float32_accuracy - accuracy, "changed_answers": int(np.sum(float32_top != exported_top))}


def export_run(run: RunDir, which: str = "best") -> Path:
    """The run's own export (`RUN/export/WHICH`), written once, and again when its weights or
    fallback change."""
    folder = run.export_dir(which)
    try:
        if ExportInfo.read(folder).source == weights_stamp(run, which):
            return folder
    except (SftError, OSError):
        pass  # none yet, damaged, or of other weights: export again
    return export(load_trained(run, which, exact=True), folder, which, overwrite=True)


def export_onnx_run(run: RunDir, which: str = "best", quantize: bool = False) -> Path:
    """The run's own ONNX export (`RUN/export/WHICH-onnx` or `WHICH-onnx-int8`), written once, and again
    when its weights or fallback change."""
    folder = run.export_dir(f"{which}-onnx-int8" if quantize else f"{which}-onnx")
    try:
        if ExportInfo.read(folder).source == weights_stamp(run, which):
            return folder
    except (SftError, OSError):
        pass
    return export_onnx(load_trained(run, which, exact=True), folder, which, quantize, overwrite=True)
