"""`sft predict`: the answer for each text (a label, or the fallback), its confidence and the top k."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sft.data.example import Example
from sft.trained import TrainedRun


def predict_examples(trained: TrainedRun, examples: Sequence[Example], top_k: int = 1) -> list[dict]:
    """The answer (a label, or the fallback), its confidence and the top-k labels, in input order."""
    probabilities = trained.probabilities(examples)
    answers = trained.fallback.answer(trained.labels, probabilities)
    results = []
    for example, p, answer in zip(examples, probabilities, answers):
        top = np.argsort(-p)[:top_k]
        results.append({
            "text": example.text,
            "label": answer,
            "confidence": float(p[top[0]]),
            "top_k": [{"label": trained.labels[i], "probability": float(p[i])} for i in top],
        })
    return results
