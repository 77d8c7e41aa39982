"""Inference: a trained run's classifier on examples or raw texts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from sft import inputs
from sft.config import Config, ModelConfig
from sft.data.example import Example
from sft.errors import RunDirError
from sft.hub import resolve
from sft.rundir import RunDir

EVAL_BATCH_SIZE = 64


def preprocessor_handle(config: ModelConfig) -> str:
    from sft.errors import ConfigError

    handle = config.preprocessor or resolve.default_preprocessor(config.encoder)
    if handle is None:
        raise ConfigError(f"model.preprocessor is not set and '{config.encoder}' has no known preprocessor: set it")
    return handle


def probabilities(model, preprocessor, split: inputs.EncodedSplit, max_seq_length: int) -> np.ndarray:
    """Class probabilities [n, classes], in the split's own order."""
    dataset, order = inputs.eval_batches(split, preprocessor, EVAL_BATCH_SIZE, max_seq_length)
    forward = _forward(model)
    batches = [forward(features).numpy() for features, _ in dataset]
    result = np.empty((len(split), model.output_shape[-1]), np.float32)
    if batches:
        result[order] = np.concatenate(batches)
    return result


def _forward(model):
    from sft.model import input_signature

    cached = getattr(model, "_sft_forward", None)
    if cached is None:
        cached = tf.function(lambda features: tf.nn.softmax(model(features, training=False)),
                             input_signature=[input_signature()])
        model._sft_forward = cached
    return cached


@dataclass
class TrainedRun:
    """What evaluation and prediction need from a run directory."""

    run: RunDir
    config: Config
    labels: list[str]
    preprocessor: object
    model: object

    def probabilities(self, examples: Sequence[Example]) -> np.ndarray:
        split = inputs.encode(self.preprocessor, examples, {label: i for i, label in enumerate(self.labels)})
        return probabilities(self.model, self.preprocessor, split, self.config.model.max_seq_length)


def load_trained(run: RunDir, which: str = "best") -> TrainedRun:
    """Rebuild the classifier from the run's config and restore its `best` (or `last`) weights."""
    from sft.model import build_classifier

    if not run.has_weights(which):
        raise RunDirError(f"run '{run.path}' has no {which} model weights yet: training has not finished an epoch")
    config, labels = run.config(), run.labels()
    preprocessor = resolve.load(preprocessor_handle(config.model), "preprocessor")
    model = build_classifier(config.model, len(labels))
    tf.train.Checkpoint(model=model).read(str(run.weights(which))).expect_partial()
    return TrainedRun(run, config, labels, preprocessor, model)


def predict_texts(trained: TrainedRun, texts: Sequence[str], top_k: int = 1) -> list[dict]:
    """Top label and its probability for each text, in input order."""
    from sft.data.clean import clean_text

    probs = trained.probabilities([Example(clean_text(t), "") for t in texts])
    results = []
    for text, p in zip(texts, probs):
        top = np.argsort(-p)[:top_k]
        results.append({
            "text": text,
            "label": trained.labels[top[0]],
            "confidence": float(p[top[0]]),
            "top_k": [{"label": trained.labels[i], "probability": float(p[i])} for i in top],
        })
    return results
