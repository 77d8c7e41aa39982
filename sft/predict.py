"""Inference: a classifier's probabilities on encoded examples, and a trained run loaded back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from sft import inputs
from sft.config import Config
from sft.data.example import Example
from sft.errors import RunDirError
from sft.hub import resolve
from sft.rundir import RunDir

BATCH_SIZE = 64


class Predictor:
    """Class probabilities from a classifier, in length-sorted batches, returned in input order."""

    def __init__(self, model, preprocessor, max_seq_length: int):
        from sft.model import input_signature

        self.model, self.preprocessor, self.max_seq_length = model, preprocessor, max_seq_length
        # One signature with [None, None] inputs: every batch shape reuses one trace.
        self._forward = tf.function(
            lambda features: tf.nn.softmax(model(features, training=False)), input_signature=[input_signature()]
        )

    def probabilities(self, split: inputs.EncodedSplit) -> np.ndarray:
        """[n, classes] probabilities, row i for example i of `split`."""
        dataset, order = inputs.eval_batches(split, self.preprocessor, BATCH_SIZE, self.max_seq_length)
        result = np.empty((len(split), self.model.output_shape[-1]), np.float32)
        batches = [self._forward(features).numpy() for features, _ in dataset]
        if batches:
            result[order] = np.concatenate(batches)
        return result


@dataclass
class TrainedRun:
    """What evaluation and prediction need from a run directory."""

    run: RunDir
    config: Config
    labels: list[str]
    predictor: Predictor

    def probabilities(self, examples: Sequence[Example]) -> np.ndarray:
        label_ids = {label: i for i, label in enumerate(self.labels)}
        return self.predictor.probabilities(inputs.encode(self.predictor.preprocessor, examples, label_ids))


def load_trained(run: RunDir, which: str = "best") -> TrainedRun:
    """Rebuild the classifier from the run's config and restore its `best` (or `last`) weights."""
    from sft.model import build_classifier

    if not run.has_weights(which):
        raise RunDirError(f"run '{run.path}' has no {which} model weights yet: training has not finished an epoch")
    config, labels = run.config(), run.labels()
    preprocessor = resolve.load(resolve.preprocessor_for(config.model), "preprocessor")
    model = build_classifier(config.model, len(labels))
    tf.train.Checkpoint(model=model).read(str(run.weights(which))).expect_partial()
    return TrainedRun(run, config, labels, Predictor(model, preprocessor, config.model.max_seq_length))


def predict_texts(trained: TrainedRun, texts: Sequence[str], top_k: int = 1) -> list[dict]:
    """Top label and its probability for each text, in input order."""
    from sft.data.clean import clean_text

    probabilities = trained.probabilities([Example(clean_text(t), "") for t in texts])
    results = []
    for text, p in zip(texts, probabilities):
        top = np.argsort(-p)[:top_k]
        results.append({
            "text": text,
            "label": trained.labels[top[0]],
            "confidence": float(p[top[0]]),
            "top_k": [{"label": trained.labels[i], "probability": float(p[i])} for i in top],
        })
    return results
