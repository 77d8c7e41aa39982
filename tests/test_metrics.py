import numpy as np
import pytest

from sft.metrics import classification_metrics

LABELS = ["a", "b", "c"]


def test_metrics_agree_with_a_hand_count():
    # gold:      a a a b b c
    # predicted: a a b b c c
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], LABELS)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: tp 2, predicted 2, gold 3 -> p 1, r 2/3; b: tp 1, predicted 2, gold 2 -> p 1/2, r 1/2;
    # c: tp 1, predicted 2, gold 1 -> p 1/2, r 1
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["macro"]["f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["macro"]["precision"] == pytest.approx(2 / 3)
    assert m["weighted"]["f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert m["micro"] == pytest.approx({"precision": 4 / 6, "recall": 4 / 6, "f1": 4 / 6})
    assert m["confusion_matrix"] == {"labels": LABELS, "matrix": [[2, 1, 0], [0, 1, 1], [0, 0, 1]]}


def test_classes_never_predicted_or_absent_count_as_zero():
    m = classification_metrics([0, 0, 1], [0, 0, 0], LABELS)
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # the macro average runs over every class of the label map
    assert m["macro"]["recall"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)


def test_empty_input_gives_zeros_not_errors():
    m = classification_metrics([], [], LABELS)
    assert m["n"] == 0 and m["accuracy"] == 0.0 and m["macro"]["f1"] == 0.0


def test_micro_f1_equals_accuracy_on_random_predictions():
    rng = np.random.default_rng(0)
    gold, predicted = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    m = classification_metrics(gold, predicted, LABELS)
    assert m["micro"]["f1"] == pytest.approx(m["accuracy"])
    assert sum(map(sum, m["confusion_matrix"]["matrix"])) == 200
