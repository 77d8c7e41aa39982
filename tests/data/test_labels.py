from collections import Counter

from sft.config import LabelConfig
from sft.data.labels import label_normalizer, rare_classes


def test_labels_are_trimmed_and_inner_white_space_collapsed_but_case_kept_by_default():
    normalize = label_normalizer(LabelConfig())
    assert normalize("  lost \t card\n") == "lost card"
    assert normalize("Joy") == "Joy"
    assert normalize("   ") == ""


def test_case_folding_and_a_mapping_that_merges_labels():
    normalize = label_normalizer(LabelConfig(casefold=True, mapping={"Happy": "joy", " glad ": "joy", "mad": "anger"}))
    assert [normalize(x) for x in ["HAPPY", "glad", "Joy", "Mad ", "sad"]] == ["joy", "joy", "joy", "anger", "sad"]


def test_rare_classes_are_dropped_or_merged_into_other():
    counts = Counter(big=10, small=2, tiny=1, other=1)
    assert rare_classes(counts, LabelConfig(min_count=3)) == {"other": None, "small": None, "tiny": None}
    assert rare_classes(counts, LabelConfig(min_count=3, rare="other")) == {"small": "other", "tiny": "other"}
    assert rare_classes(counts, LabelConfig()) == {}  # min_count 1: every class is kept
