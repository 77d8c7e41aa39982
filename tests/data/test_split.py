from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from sft.data.example import SPLITS, Example
from sft.data.split import split_examples


def dialogues(sizes_and_labels):
    return [Example(f"d{d} t{t}", label, f"d{d}") for d, (size, label) in enumerate(sizes_and_labels)
            for t in range(size)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.sampled_from("abc")), min_size=1, max_size=40),
       st.sampled_from([0.0, 0.1, 0.3]), st.sampled_from([0.0, 0.2]), st.integers(0, 3))
def test_every_example_lands_once_and_no_dialogue_spans_two_splits(groups, validation, test, seed):
    examples = dialogues(groups)
    splits = split_examples(examples, validation, test, seed)
    assert sorted(e.text for s in SPLITS for e in splits[s]) == sorted(e.text for e in examples)
    owner = {}
    for s in SPLITS:
        for e in splits[s]:
            assert owner.setdefault(e.dialogue_id, s) == s
    assert splits == split_examples(examples, validation, test, seed)  # the seed decides


def test_split_sizes_follow_the_fractions_label_by_label():
    examples = dialogues([(2, label) for label in "ab" for _ in range(50)])
    splits = split_examples(examples, 0.1, 0.2, seed=13)
    counts = {s: Counter(e.label for e in splits[s]) for s in SPLITS}
    assert counts == {"train": {"a": 70, "b": 70}, "validation": {"a": 10, "b": 10}, "test": {"a": 20, "b": 20}}
