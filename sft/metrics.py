"""Classification metrics from gold and predicted class ids: the one source of every report.

Pure NumPy. Where a ratio has a zero denominator (a class never predicted has no
precision; a class absent from the gold labels has no recall) it counts as 0,
as scikit-learn's `zero_division=0` does. Macro averages run over every class of
the label map, whether or not it occurs in this split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sft.errors import ConfigError


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

    precision, recall, f1, averages = _averages(true_positives, predicted_count, support)
    n = int(matrix.sum())
    weights = support / support.sum() if support.sum() else support

    return {
        "n": n,
        "accuracy": float(true_positives.sum() / n) if n else 0.0,
        **averages,
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


def excluding(matrix: Sequence[Sequence[int]], labels: Sequence[str], exclude: Sequence[str]) -> dict:
    """Precision, recall and F1 averaged macro and micro over every class but `exclude`, as
    scikit-learn's `labels=` argument computes them: how emotion recognition is scored without
    its "neutral" class. An excluded class still counts where it is wrongly predicted or missed."""
    matrix = np.asarray(matrix, np.float64)
    keep = [i for i, label in enumerate(labels) if label not in set(exclude)]
    *_, averages = _averages(np.diag(matrix)[keep], matrix.sum(axis=0)[keep], matrix.sum(axis=1)[keep])
    return {"labels": sorted(exclude), **averages}


def _averages(true_positives: np.ndarray, predicted_count: np.ndarray, support: np.ndarray):
    """Per-class precision, recall and F1 from a class's counts, and their macro and micro averages."""
    precision, recall = _divide(true_positives, predicted_count), _divide(true_positives, support)
    f1 = _divide(2 * precision * recall, precision + recall)
    micro_precision = _divide(true_positives.sum(), predicted_count.sum())
    micro_recall = _divide(true_positives.sum(), support.sum())
    return precision, recall, f1, {
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
        "micro": {"precision": float(micro_precision), "recall": float(micro_recall),
                  "f1": float(_divide(2 * micro_precision * micro_recall, micro_precision + micro_recall))},
    }


def check_excluded(exclude: Sequence[str], labels: Sequence[str]) -> None:
    """`metrics.exclude_labels` must name classes of the label map, and leave one."""
    unknown = sorted(set(exclude) - set(labels))
    if unknown:
        raise ConfigError(f"metrics.exclude_labels names {', '.join(map(repr, unknown))}, not a class of this data "
                          f"(classes: {', '.join(labels[:20])}{' ...' if len(labels) > 20 else ''})")
    if not set(labels) - set(exclude):
        raise ConfigError("metrics.exclude_labels leaves no class to score")


def _divide(numerator, denominator):
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


def most_confused(matrix: Sequence[Sequence[int]], labels: Sequence[str], k: int = 10) -> list[dict]:
    """The `k` largest off-diagonal cells: which gold label is most often taken for which."""
    matrix = np.asarray(matrix)
    off = matrix - np.diag(np.diag(matrix))
    cells = np.argsort(-off, axis=None, kind="stable")[:k]
    pairs = [np.unravel_index(c, off.shape) for c in cells]
    return [{"gold": labels[g], "predicted": labels[p], "count": int(off[g, p])} for g, p in pairs if off[g, p] > 0]


def calibration(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> dict:
    """Expected calibration error over equal-width confidence bins, and the bins (a reliability diagram)."""
    confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        mean_confidence = float(confidence[members].mean()) if count else 0.0
        accuracy = float(correct[members].mean()) if count else 0.0
        ece += count / max(len(confidence), 1) * abs(accuracy - mean_confidence)
        table.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": count,
                      "confidence": mean_confidence, "accuracy": accuracy})
    return {"ece": float(ece), "bins": table}


def out_of_scope(gold_out: Sequence[bool], predicted_out: Sequence[bool], in_scope_correct: Sequence[bool]) -> dict:
    """In-scope accuracy (a fallback counts as wrong), and recall and precision of saying "I don't know"."""
    gold_out, predicted_out = np.asarray(gold_out, bool), np.asarray(predicted_out, bool)
    in_scope_correct = np.asarray(in_scope_correct, bool)
    hits = float((gold_out & predicted_out).sum())
    return {
        "in_scope_accuracy": float(in_scope_correct[~gold_out].mean()) if (~gold_out).any() else 0.0,
        "out_of_scope_recall": float(_divide(hits, gold_out.sum())),
        "out_of_scope_precision": float(_divide(hits, predicted_out.sum())),
        "out_of_scope_examples": int(gold_out.sum()),
    }


def choose_threshold(confidence: Sequence[float], correct: Sequence[bool], max_accuracy_drop: float) -> float:
    """The highest confidence cut whose accuracy (cut examples count as wrong) stays within the drop of the best.

    The highest such cut rejects the most: it maximises out-of-scope recall at that cost.
    """
    confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct, bool)
    if not len(confidence):
        return 0.0
    floor = correct.mean() - max_accuracy_drop
    best = 0.0
    for cut in np.unique(confidence):  # accuracy only changes at observed confidences
        if (correct & (confidence >= cut)).mean() >= floor - 1e-12:
            best = float(cut)
    return best
