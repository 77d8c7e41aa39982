"""`sft evaluate`: score a trained run on a split or a prepared file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sft.data.example import read_jsonl
from sft.files import write_json
from sft.metrics import classification_metrics
from sft.predict import load_trained
from sft.rundir import RunDir


def evaluate(run: RunDir, split: str = "test", data_file: str | Path | None = None, which: str = "best") -> dict:
    """Metrics of the run's `which` model on `split` of its prepared data (or on `data_file`).

    Writes them to `eval_<split>.json` in the run directory (`eval_<file stem>.json` for a file).
    """
    path = Path(data_file) if data_file else Path(run.run_info()["data_dir"]) / f"{split}.jsonl"
    name = path.stem if data_file else split
    examples = read_jsonl(path)
    trained = load_trained(run, which)
    known = set(trained.labels)
    # Labels the model never saw cannot be scored; report them rather than fail.
    unseen = Counter(e.label for e in examples if e.label not in known)
    scored = [e for e in examples if e.label in known]
    label_ids = {label: i for i, label in enumerate(trained.labels)}
    predicted = trained.probabilities(scored).argmax(-1) if scored else []
    metrics = classification_metrics([label_ids[e.label] for e in scored], predicted, trained.labels)
    metrics.update({"split": name, "data": str(path), "model": which, "unseen_labels": dict(unseen)})
    write_json(run.eval_file(name), metrics)
    return metrics


def format_table(metrics: dict) -> str:
    """A plain-text report: the averages, then one line a class."""
    lines = [
        f"{metrics['split']}: {metrics['n']} examples, accuracy {metrics['accuracy']:.4f}",
        f"{'':>24} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}",
    ]
    for label, m in metrics["per_class"].items():
        lines.append(f"{label[:24]:>24} {m['precision']:9.4f} {m['recall']:9.4f} {m['f1']:9.4f} {m['support']:8d}")
    for average in ("macro", "micro", "weighted"):
        m = metrics[average]
        lines.append(f"{average + ' avg':>24} {m['precision']:9.4f} {m['recall']:9.4f} {m['f1']:9.4f} {metrics['n']:8d}")
    if metrics.get("unseen_labels"):
        lines.append(f"not scored (labels unseen in training): {metrics['unseen_labels']}")
    return "\n".join(lines)
