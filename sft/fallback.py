"""Saying "I don't know": answers less confident than a threshold become the fallback label.

The threshold is chosen once, on the validation split at the end of training,
and saved in the run; every consumer answers through `Fallback.answer`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sft.config import FallbackConfig
from sft.metrics import choose_threshold
from sft.rundir import RunDir

if TYPE_CHECKING:  # TensorFlow stays out of what only reads a threshold (sft serve's start)
    from sft import inputs
    from sft.engine import Engine


@dataclass(frozen=True)
class Fallback:
    """Answers less confident than `threshold` become `label` ("I don't know")."""

    label: str | None = None
    threshold: float = 0.0

    @classmethod
    def read(cls, run: RunDir) -> Fallback:
        if not run.fallback_file.is_file():
            return cls()
        saved = json.loads(run.fallback_file.read_text(encoding="utf-8"))
        return cls(saved["label"], saved["threshold"])

    def answer(self, labels: Sequence[str], probabilities: np.ndarray) -> list[str | None]:
        declined = self.declines(probabilities)
        return [self.label if no else labels[t] for t, no in zip(probabilities.argmax(-1), declined)]

    def declines(self, probabilities: np.ndarray) -> np.ndarray:
        """[n] bool: where the fallback answers instead of the model."""
        return probabilities.max(-1) < self.threshold


def choose_fallback(engine: Engine, split: inputs.EncodedSplit, labels: Sequence[str],
                    config: FallbackConfig) -> dict:
    """The threshold for `config.label`, chosen on a validation split (see `metrics.choose_threshold`)."""
    probabilities = engine.split_probabilities(split)
    in_scope = np.array([labels[g] != config.out_of_scope_label for g in split.labels], bool)
    correct = probabilities.argmax(-1) == split.labels
    confidence = probabilities.max(-1)
    threshold = choose_threshold(confidence[in_scope], correct[in_scope], config.max_accuracy_drop)
    kept = confidence[in_scope] >= threshold
    return {
        "label": config.label,
        "threshold": threshold,
        "max_accuracy_drop": config.max_accuracy_drop,
        "validation_accuracy": float(correct[in_scope].mean()) if in_scope.any() else 0.0,
        "validation_accuracy_with_fallback": float((correct[in_scope] & kept).mean()) if in_scope.any() else 0.0,
        "validation_answered_fraction": float(kept.mean()) if in_scope.any() else 0.0,
    }
