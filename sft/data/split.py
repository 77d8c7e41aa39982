"""Stratified, dialogue-grouped train/validation/test splits."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence

from sft.data.example import SPLITS, Example


def split_examples(
    examples: Sequence[Example], validation_size: float, test_size: float, seed: int
) -> dict[str, list[Example]]:
    """Assign whole dialogues to splits so that each split's label mix follows the whole.

    Examples without a dialogue id are their own group. Groups are placed largest
    first, each into the split whose label counts most fall short of their targets.
    """
    fractions = {"train": 1.0 - validation_size - test_size, "validation": validation_size, "test": test_size}
    groups: dict[object, list[Example]] = defaultdict(list)
    for i, example in enumerate(examples):
        groups[example.dialogue_id if example.dialogue_id is not None else ("row", i)].append(example)

    totals = Counter(e.label for e in examples)
    target = {s: {label: fractions[s] * n for label, n in totals.items()} for s in SPLITS}
    placed = {s: Counter() for s in SPLITS}
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    order.sort(key=len, reverse=True)  # stable: equal sizes keep their shuffled order

    out: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for group in order:
        counts = Counter(e.label for e in group)

        def shortfall(s: str) -> float:
            return sum((target[s][label] - placed[s][label]) * n for label, n in counts.items())

        best = max((s for s in SPLITS if fractions[s] > 0), key=shortfall)
        placed[best].update(counts)
        out[best].extend(group)
    return out
