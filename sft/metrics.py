"""Classification metrics from gold and predicted class ids: the one source of every report.

Pure NumPy. Where a ratio has a zero denominator (a class never predicted has no
precision; a class absent from the gold labels has no recall) it counts as 0,
as scikit-learn's `zero_division=0` does. Macro averages run over every class of
the label map, whether or not it occurs in this split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(gold: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """`matrix[g, p]` counts examples of gold class g predicted as p."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(gold), np.asarray(predicted)), 1)
    return matrix


def classification_metrics(gold: Sequence[int], predicted: Sequence[int], labels: Sequence[str]) -> dict:
    """Accuracy; precision, recall and F1 macro, micro and weighted; per class; the confusion matrix."""
    gold, predicted = np.asarray(gold, np.int64), np.asarray(predicted, np.int64)
    matrix = confusion_matrix(gold, predicted, len(labels))
    true_positives = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    predicted_count = matrix.sum(axis=0).astype(np.float64)

    precision = _divide(true_positives, predicted_count)
    recall = _divide(true_positives, support)
    f1 = _divide(2 * precision * recall, precision + recall)
    n = int(matrix.sum())
    micro_precision = _divide(true_positives.sum(), predicted_count.sum())
    micro_recall = _divide(true_positives.sum(), support.sum())
    weights = support / support.sum() if support.sum() else support

    return {
        "n": n,
        "accuracy": float(true_positives.sum() / n) if n else 0.0,
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
        "micro": {
            "precision": float(micro_precision),
            "recall": float(micro_recall),
            "f1": float(_divide(2 * micro_precision * micro_recall, micro_precision + micro_recall)),
        },
        "weighted": {
            "precision": float(precision @ weights),
            "recall": float(recall @ weights),
            "f1": float(f1 @ weights),
        },
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": {"labels": list(labels), "matrix": matrix.tolist()},
    }


def _divide(numerator, denominator):
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)
