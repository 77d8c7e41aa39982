"""The baseline a user would try first: a linear classifier on the frozen pretrained encoder.

What fine-tuning bought is the fine-tuned model against this. `sft train` fits it
at the end of a run (`train.baseline`, default true): one forward pass of the
pretrained encoder (the run's handle, not its trained weights) over the train and
validation splits, pooled as the run's head pools (`model.pooling`), the features
cached in `RUN/baseline/`; then multinomial logistic regression on standardised
features, its L2 strength chosen on validation by the run's `train.select_metric`,
as the run's own best epoch is. `sft evaluate` scores it beside the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from sft import inputs
from sft.errors import DataError
from sft.metrics import classification_metrics, excluding

L2_CHOICES = (1e-4, 1e-3, 1e-2)
STEPS = 200
LEARNING_RATE = 0.05


@dataclass(frozen=True)
class Baseline:
    """Logistic regression on standardised pooled embeddings."""

    weights: np.ndarray  # [features, classes]
    bias: np.ndarray  # [classes]
    mean: np.ndarray  # [features]
    scale: np.ndarray  # [features]
    l2: float

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = ((features - self.mean) / self.scale) @ self.weights + self.bias
        shifted = np.exp(logits - logits.max(-1, keepdims=True))
        return shifted / shifted.sum(-1, keepdims=True)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "classifier.npz", weights=self.weights, bias=self.bias, mean=self.mean, scale=self.scale,
                 l2=self.l2)

    @classmethod
    def load(cls, folder: Path) -> Baseline | None:
        path = folder / "classifier.npz"
        if not path.is_file():
            return None
        saved = np.load(path)
        return cls(saved["weights"], saved["bias"], saved["mean"], saved["scale"], float(saved["l2"]))


class Embedder:
    """The run's pretrained encoder (its handle, not its trained weights), loaded once: examples in,
    pooled embeddings out, as the run's head would read them (`model.pooling`, the run's context)."""

    def __init__(self, run, preprocessor=None):
        import tensorflow_hub as hub

        from sft.hub import resolve

        self.config = run.config()
        handles = resolve.Handles.of_run(run.run_info(), self.config.model)
        self.preprocessor = preprocessor or resolve.load(handles.preprocessor, "preprocessor")
        encoder = hub.KerasLayer(resolve.load(handles.encoder, "encoder"), trainable=False)
        mean = self.config.model.pooling == "mean"

        @tf.function(reduce_retracing=True)
        def pooled(features):
            outputs = encoder(features)
            if not mean:
                return tf.cast(outputs["pooled_output"], tf.float32)
            mask = tf.cast(features["input_mask"], tf.float32)[:, :, tf.newaxis]
            sequence = tf.cast(outputs["sequence_output"], tf.float32)
            return tf.reduce_sum(sequence * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)

        self._pooled = pooled

    def __call__(self, examples, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """[n, hidden] embeddings and [n] class ids of the examples whose label the run knows."""
        encoded = inputs.encode(self.preprocessor, examples, {label: i for i, label in enumerate(labels)},
                                self.config.data.context_turns)
        batches = [(rows, self._pooled(features).numpy())
                   for rows, features in inputs.eval_batches(encoded, self.preprocessor, 64,
                                                             self.config.model.max_seq_length)]
        features = np.zeros((len(encoded), batches[0][1].shape[-1] if batches else 0), np.float32)
        for rows, pooled in batches:
            features[rows] = pooled
        known = encoded.labels >= 0
        return features[known], encoded.labels[known]


def fit(train_x: np.ndarray, train_y: np.ndarray, validation_x: np.ndarray, validation_y: np.ndarray,
        labels: list[str], select_metric: str, exclude: list[str]) -> tuple[Baseline, dict]:
    """The L2 strength of `L2_CHOICES` whose classifier scores best on validation; its scores."""
    mean, scale = train_x.mean(0), train_x.std(0) + 1e-6
    x = tf.constant((train_x - mean) / scale)
    y = tf.constant(train_y.astype(np.int32))
    best, best_score, best_scores = None, -np.inf, {}
    for l2 in L2_CHOICES:
        weights, bias = _logistic_regression(x, y, len(labels), l2)
        model = Baseline(weights, bias, mean, scale, l2)
        scores = _scores(model.probabilities(validation_x), validation_y, labels, exclude) if len(validation_y) \
            else {"accuracy": 0.0}
        score = scores.get(select_metric, scores["accuracy"])
        if score > best_score:
            best, best_score, best_scores = model, score, scores | {"l2": l2}
    return best, best_scores


def _logistic_regression(x: tf.Tensor, y: tf.Tensor, classes: int, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch Adam on the mean cross-entropy plus `l2` times the squared weights."""
    weights = tf.Variable(tf.zeros([x.shape[1], classes]))
    bias = tf.Variable(tf.zeros([classes]))
    moments = [tf.Variable(tf.zeros_like(v)) for v in (weights, bias) for _ in range(2)]

    @tf.function
    def train():
        for step in tf.range(1, STEPS + 1):
            with tf.GradientTape() as tape:
                logits = x @ weights + bias
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
                loss += l2 * tf.reduce_sum(tf.square(weights))
            for variable, gradient, (m, v) in zip((weights, bias), tape.gradient(loss, [weights, bias]),
                                                  (moments[0:2], moments[2:4])):
                m.assign(0.9 * m + 0.1 * gradient)
                v.assign(0.999 * v + 0.001 * tf.square(gradient))
                t = tf.cast(step, tf.float32)
                m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
                variable.assign_sub(LEARNING_RATE * m_hat / (tf.sqrt(v_hat) + 1e-8))

    train()
    return weights.numpy(), bias.numpy()


def _scores(probabilities: np.ndarray, gold: np.ndarray, labels: list[str], exclude: list[str]) -> dict:
    metrics = classification_metrics(gold, probabilities.argmax(-1), labels)
    scores = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro"]["f1"],
              "weighted_f1": metrics["weighted"]["f1"]}
    if exclude:
        left = excluding(metrics["confusion_matrix"]["matrix"], labels, exclude)
        scores |= {"macro_f1_excluding": left["macro"]["f1"], "micro_f1_excluding": left["micro"]["f1"]}
    return scores


def compare(fine_tuned: dict, baseline: dict, most: int = 5) -> dict:
    """The classes fine-tuning helped and hurt most, by F1 against the baseline."""
    gains = sorted(((label, c["f1"] - baseline["per_class"][label]["f1"]) for label, c in fine_tuned["per_class"].items()
                    if label in baseline["per_class"]), key=lambda item: item[1])
    as_rows = lambda items: [{"label": label, "f1_gain": gain} for label, gain in items]  # noqa: E731
    return {"helped": as_rows(reversed(gains[-most:])), "hurt": as_rows(gains[:most])}


def fitted(run, embedder: Embedder) -> Baseline:
    """The run's baseline, fitted now if it has none yet (a run trained before baselines existed)."""
    model = Baseline.load(run.baseline_dir)
    if model is None:
        model, _ = fit_run(run, embedder)
    return model


def fit_run(run, embedder: Embedder | None = None) -> tuple[Baseline, dict]:
    """Fit the run's baseline on its prepared train and validation splits; save it and its validation scores."""
    from sft.data.example import read_jsonl
    from sft.data.prepared import PreparedDir
    from sft.files import write_json

    embedder = embedder or Embedder(run)
    config, labels = embedder.config, run.labels()
    data = PreparedDir(Path(run.run_info()["data_dir"]))
    splits = {}
    for name in ("train", "validation"):
        path = data.split_file(name)
        examples = read_jsonl(path) if path.is_file() else []
        if name == "train" and not examples:
            raise DataError(f"the baseline is fitted on the run's train split, and '{path}' is missing or empty")
        splits[name] = embedder(examples, labels)
    model, scores = fit(*splits["train"], *splits["validation"], labels, config.train.select_metric,
                        config.metrics.exclude_labels)
    folder = run.baseline_dir
    model.save(folder)
    for name, (features, _) in splits.items():
        np.save(folder / f"features_{name}.npy", features)
    write_json(folder / "validation.json", scores)
    return model, scores


def score(run, examples, labels: list[str]) -> dict:
    """The baseline's test figures on `examples`: accuracy, the averages and per-class scores."""
    embedder = Embedder(run)
    model = fitted(run, embedder)
    features, gold = embedder(examples, labels)
    metrics = classification_metrics(gold, model.probabilities(features).argmax(-1), labels)
    return {key: metrics[key] for key in ("accuracy", "macro", "micro", "weighted", "per_class")} | {"l2": model.l2}
