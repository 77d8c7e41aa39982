"""Inference: a classifier's probabilities on encoded examples, and a trained run loaded back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from sft import inputs
from sft.config import Config, FallbackConfig
from sft.data.example import Example
from sft.errors import CheckpointError, RunDirError, one_line
from sft.hub import resolve
from sft.hub.encoder import input_signature
from sft.metrics import choose_threshold
from sft.rundir import RunDir

BATCH_SIZE = 64


class Predictor:
    """Class probabilities from a classifier, in length-sorted batches, returned in input order."""

    def __init__(self, model, preprocessor, max_seq_length: int, xla: bool = False):
        self.model, self.preprocessor, self.max_seq_length, self.xla = model, preprocessor, max_seq_length, xla
        # One signature with [None, None] inputs: every batch shape reuses one trace.
        self._forward = tf.function(
            lambda features: tf.nn.softmax(model(features, training=False)),
            input_signature=[input_signature()], jit_compile=xla,
        )

    def probabilities(self, split: inputs.EncodedSplit) -> np.ndarray:
        """[n, classes] probabilities, row i for example i of `split`."""
        dataset, order = inputs.eval_batches(split, self.preprocessor, BATCH_SIZE, self.max_seq_length,
                                             length_multiple=inputs.LENGTH_MULTIPLE if self.xla else 1)
        result = np.empty((len(split), self.model.output_shape[-1]), np.float32)
        batches = [self._forward(features).numpy() for features, _ in dataset]
        if batches:
            result[order] = np.concatenate(batches)
        return result


@dataclass(frozen=True)
class Fallback:
    """Answers less confident than `threshold` become `label` ("I don't know")."""

    label: str | None = None
    threshold: float = 0.0

    @classmethod
    def read(cls, run: RunDir) -> Fallback:
        if not run.fallback_file.is_file():
            return cls()
        saved = json.loads(run.fallback_file.read_text(encoding="utf-8"))
        return cls(saved["label"], saved["threshold"])

    def answer(self, labels: Sequence[str], probabilities: np.ndarray) -> list[str | None]:
        top = probabilities.argmax(-1)
        return [labels[t] if p[t] >= self.threshold else self.label for t, p in zip(top, probabilities)]


def choose_fallback(predictor: Predictor, split: inputs.EncodedSplit, labels: Sequence[str],
                    config: FallbackConfig) -> dict:
    """The threshold for `config.label`, chosen on a validation split (see `metrics.choose_threshold`)."""
    probabilities = predictor.probabilities(split)
    in_scope = np.array([labels[g] != config.out_of_scope_label for g in split.labels], bool)
    correct = probabilities.argmax(-1) == split.labels
    confidence = probabilities.max(-1)
    threshold = choose_threshold(confidence[in_scope], correct[in_scope], config.max_accuracy_drop)
    kept = confidence[in_scope] >= threshold
    return {
        "label": config.label,
        "threshold": threshold,
        "max_accuracy_drop": config.max_accuracy_drop,
        "validation_accuracy": float(correct[in_scope].mean()) if in_scope.any() else 0.0,
        "validation_accuracy_with_fallback": float((correct[in_scope] & kept).mean()) if in_scope.any() else 0.0,
        "validation_answered_fraction": float(kept.mean()) if in_scope.any() else 0.0,
    }


@dataclass
class TrainedRun:
    """What evaluation and prediction need from a run directory."""

    run: RunDir | None
    config: Config | None
    labels: list[str]
    predictor: Predictor
    fallback: Fallback = Fallback()

    def probabilities(self, examples: Sequence[Example]) -> np.ndarray:
        label_ids = {label: i for i, label in enumerate(self.labels)}
        return self.predictor.probabilities(inputs.encode(self.predictor.preprocessor, examples, label_ids))


def load_trained(run: RunDir, which: str = "best") -> TrainedRun:
    """Rebuild the classifier from the run's config and restore its `best` (or `last`) weights."""
    from sft.model import build_classifier, non_finite_weights

    if not run.has_weights(which):
        when = ("after its first epoch" if which == "best" else
                "when training ends; use --model best, or finish it with `sft train --resume`")
        raise RunDirError(f"run '{run.path}' has no {which} model weights: they are written {when}")
    config, labels = run.config(), run.labels()
    preprocessor = resolve.load(resolve.preprocessor_for(config.model), "preprocessor")
    model = build_classifier(config.model, len(labels))
    try:
        tf.train.Checkpoint(model=model).read(str(run.weights(which))).expect_partial()
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError(f"the {which} weights of run '{run.path}' cannot be read "
                              f"({one_line(str(e))[:200]}); train the run again") from None
    if non_finite_weights(model):
        raise CheckpointError(f"the {which} weights of run '{run.path}' are not finite (NaN or infinite): "
                              "the run diverged; train it again with a lower train.learning_rate")
    predictor = Predictor(model, preprocessor, config.model.max_seq_length)
    return TrainedRun(run, config, labels, predictor, Fallback.read(run))


def predict_texts(trained: TrainedRun, texts: Sequence[str], top_k: int = 1) -> list[dict]:
    """Top label and its probability for each raw text (cleaned as `sft prepare` cleans), in input order."""
    from sft.data.clean import clean_text

    return predict_examples(trained, [Example(clean_text(t), "") for t in texts], top_k)


def predict_examples(trained: TrainedRun, examples: Sequence[Example], top_k: int = 1) -> list[dict]:
    """The answer (a label, or the fallback), its confidence and the top-k labels, in input order."""
    probabilities = trained.probabilities(examples)
    answers = trained.fallback.answer(trained.labels, probabilities)
    results = []
    for example, p, answer in zip(examples, probabilities, answers):
        top = np.argsort(-p)[:top_k]
        results.append({
            "text": example.text,
            "label": answer,
            "confidence": float(p[top[0]]),
            "top_k": [{"label": trained.labels[i], "probability": float(p[i])} for i in top],
        })
    return results
