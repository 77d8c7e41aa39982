"""Raw labels to classes: normalised, mapped through the config's table, rare classes dropped or merged."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable

from sft.config import CleanConfig, LabelConfig
from sft.data.clean import clean_text

# Labels are names, not prose: no HTML to strip, but the same Unicode and white-space rules as texts.
_LABEL_CLEAN = CleanConfig(html=False)


def label_normalizer(config: LabelConfig) -> Callable[[str], str]:
    """A function from a raw label to its class name ("" for no label).

    Labels are trimmed, inner white space collapsed, optionally case folded, then
    looked up in `config.mapping`, whose keys are normalised the same way.

    >>> normalize = label_normalizer(LabelConfig(casefold=True, mapping={"Happy": "joy"}))
    >>> normalize("  HAPPY "), normalize("Sad")
    ('joy', 'sad')
    """

    def normalize(label: str) -> str:
        label = clean_text(label, _LABEL_CLEAN)
        return label.casefold() if config.casefold else label

    mapping = {normalize(raw): clean_text(target, _LABEL_CLEAN) for raw, target in config.mapping.items()}

    @functools.lru_cache(maxsize=4096)  # a data set has few distinct labels
    def to_class(label: str) -> str:
        label = normalize(label)
        return mapping.get(label, label)

    return to_class


def rare_classes(counts: Counter, config: LabelConfig) -> dict[str, str | None]:
    """Classes with fewer than `config.min_count` examples: each to `config.other`, or to None (dropped).

    >>> rare_classes(Counter(a=5, b=1, c=2), LabelConfig(min_count=3, rare="other"))
    {'b': 'other', 'c': 'other'}
    """
    target = config.other if config.rare == "other" else None
    return {label: target for label, n in sorted(counts.items()) if n < config.min_count and label != target}
