import numpy as np
import pytest

from sft.metrics import calibration, choose_threshold, classification_metrics, most_confused, out_of_scope

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


def test_metrics_agree_with_scikit_learn_on_random_predictions():
    """Including classes missing from the predictions and from the gold labels (zero division -> 0)."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    labels = [f"c{i}" for i in range(8)]
    for trial in range(20):
        gold = rng.integers(0, 6, 60)  # c6, c7 never gold
        predicted = rng.choice([0, 1, 2, 3, 6, 7], 60)  # c4, c5 never predicted
        m = classification_metrics(gold, predicted, labels)
        everything = list(range(len(labels)))
        assert m["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(gold, predicted))
        for average in ("macro", "micro", "weighted"):
            p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(
                gold, predicted, labels=everything, average=average, zero_division=0)
            assert (m[average]["precision"], m[average]["recall"], m[average]["f1"]) == pytest.approx((p, r, f))
        p, r, f, s = sklearn_metrics.precision_recall_fscore_support(
            gold, predicted, labels=everything, average=None, zero_division=0)
        for i, label in enumerate(labels):
            assert m["per_class"][label] == pytest.approx(
                {"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]})
        assert m["confusion_matrix"]["matrix"] == sklearn_metrics.confusion_matrix(
            gold, predicted, labels=everything).tolist()


def test_most_confused_pairs_come_from_the_off_diagonal():
    matrix = [[5, 3, 0], [1, 4, 0], [0, 7, 9]]
    assert most_confused(matrix, LABELS, k=2) == [
        {"gold": "c", "predicted": "b", "count": 7}, {"gold": "a", "predicted": "b", "count": 3}]


def test_expected_calibration_error_by_hand():
    # bin [0.9, 1.0]: confidences 0.95, 0.95, accuracy 1/2 -> gap 0.45, weight 2/4
    # bin [0.5, 0.6): confidences 0.55, 0.55, accuracy 1/2 -> gap 0.05, weight 2/4
    result = calibration([0.95, 0.95, 0.55, 0.55], [True, False, True, False])
    assert result["ece"] == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)
    assert sum(b["count"] for b in result["bins"]) == 4


def test_threshold_keeps_accuracy_within_the_allowed_drop():
    confidence = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    correct = [True, True, True, True, True, False, True, False, False, False]  # accuracy 0.6
    # cutting at 0.3 keeps 0.9..0.3: 6 correct of 10 -> no loss; at 0.5, 5 of 10 -> a 0.1 loss
    assert choose_threshold(confidence, correct, max_accuracy_drop=0.0) == pytest.approx(0.3)
    assert choose_threshold(confidence, correct, max_accuracy_drop=0.1) == pytest.approx(0.5)
    assert choose_threshold([], [], 0.1) == 0.0


def test_out_of_scope_scores():
    result = out_of_scope(gold_out=[True, True, False, False], predicted_out=[True, False, True, False],
                          in_scope_correct=[False, False, False, True])
    assert result == {"in_scope_accuracy": 0.5, "out_of_scope_recall": 0.5, "out_of_scope_precision": 0.5,
                      "out_of_scope_examples": 2}


@pytest.mark.parametrize("seed", range(5))
def test_averages_without_some_classes_match_scikit_learns_labels_argument(seed):
    from sklearn.metrics import precision_recall_fscore_support

    from sft.metrics import confusion_matrix, excluding

    rng = np.random.default_rng(seed)
    labels = ["neutral", "joy", "anger", "fear", "sadness"]
    gold = rng.choice(5, 300, p=[0.6, 0.2, 0.1, 0.05, 0.05])
    predicted = np.where(rng.random(300) < 0.5, gold, rng.choice(5, 300))
    kept = [1, 2, 3, 4]
    result = excluding(confusion_matrix(gold, predicted, 5), labels, ["neutral"])
    assert result["labels"] == ["neutral"]
    for average in ("macro", "micro"):
        p, r, f, _ = precision_recall_fscore_support(gold, predicted, labels=kept, average=average, zero_division=0)
        assert (result[average]["precision"], result[average]["recall"], result[average]["f1"]) == pytest.approx((p, r, f))


def test_excluded_labels_must_be_classes_and_leave_one():
    from sft.errors import ConfigError
    from sft.metrics import check_excluded

    check_excluded(["neutral"], ["joy", "neutral"])
    with pytest.raises(ConfigError, match="'nuetral', not a class of this data"):
        check_excluded(["nuetral"], ["joy", "neutral"])
    with pytest.raises(ConfigError, match="leaves no class"):
        check_excluded(["joy", "neutral"], ["joy", "neutral"])
