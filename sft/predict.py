"""What a classifier answers for each text: a label (or the fallback), its confidence and the top k.

`sft predict` and `sft serve` answer through `answers`, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from sft.data.example import Example
from sft.fallback import Fallback

if TYPE_CHECKING:  # sft serve answers without loading a run
    from sft.trained import TrainedRun


def predict_examples(trained: TrainedRun, examples: Sequence[Example], top_k: int = 1) -> list[dict]:
    """The answer for each example, in input order."""
    return answers([e.text for e in examples], trained.probabilities(examples), trained.labels, trained.fallback, top_k)


def answers(texts: Sequence[str], probabilities: np.ndarray, labels: Sequence[str], fallback: Fallback,
            top_k: int = 1) -> list[dict]:
    """`{text, label, confidence, fallback, top_k}` for each row of `probabilities`; `label` is
    the fallback's where the model is less sure than the run's threshold (`fallback` is then true)."""
    declined = fallback.declines(probabilities)
    results = []
    for text, p, no in zip(texts, probabilities, declined):
        top = np.argsort(-p, kind="stable")[:top_k]
        results.append({
            "text": text,
            "label": fallback.label if no else labels[top[0]],
            "confidence": float(p[top[0]]),
            "fallback": bool(no),
            "top_k": [{"label": labels[i], "probability": float(p[i])} for i in top],
        })
    return results
