"""`sft evaluate`: score a trained run on a split or a prepared file, and say what to look at.

Writes into the run directory:
- `eval_<name>.json`: the metrics (keys documented in the README);
- `eval_<name>_errors.csv`: every misclassified example with gold, predicted and confidence;
- with `report=True`, `report_<name>/index.md` and its pictures (see `sft.report`).
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from sft.data.example import read_jsonl
from sft.data.prepared import PreparedDir
from sft.files import write_json, write_text
from sft.metrics import (calibration, check_excluded, classification_metrics, excluding, most_confused,
                         out_of_scope)
from sft.trained import TrainedRun, load_trained
from sft.rundir import RunDir

log = logging.getLogger("sft")


def evaluate(run: RunDir, split: str = "test", data_file: str | Path | None = None, which: str = "best",
             report: bool = False, exclude: list[str] | None = None, engine: str = "tf", threads: int = 0,
             spin: bool = False) -> dict:
    """Metrics of the run's `which` model on `split` of its prepared data (or on `data_file`);
    `exclude` (default: the run's metrics.exclude_labels) adds the averages without those classes.
    Another engine than "tf" writes its files with its name: `eval_test-onnx-int8.json`."""
    path = Path(data_file) if data_file else PreparedDir(Path(run.run_info()["data_dir"])).split_file(split)
    name = (path.stem if data_file else split) + ("" if engine == "tf" else f"-{engine}")
    examples = read_jsonl(path)
    trained = load_trained(run, which, engine, threads, spin)
    metrics = score(trained, examples, exclude)
    metrics.update({"split": name, "data": str(path), "model": which, "engine": engine})
    if trained.config.train.baseline and examples:
        _add_baseline(metrics, run, examples, trained.labels)
    predictions = metrics.pop("_predictions")
    write_text(run.errors_file(name), _errors_csv(examples, predictions))
    write_json(run.eval_file(name), metrics)
    if report:
        from sft.report import write_report

        rows = [{"text": e.text, "context": " | ".join(e.context), "gold": e.label, "answer": answer, "top": top,
                 "confidence": confidence, "source": e.source or "", "gold_known": e.label in trained.labels}
                for e, (answer, confidence, top) in zip(examples, predictions)]
        metrics["report"] = str(write_report(run.report_dir(name), metrics, run.path.name, rows,
                                             _facts(run, trained, metrics, engine)))
        write_json(run.eval_file(name), metrics)
    return metrics


def score(trained: TrainedRun, examples, exclude: list[str] | None = None) -> dict:
    """Everything `eval_<name>.json` holds, computed from one pass of the model over `examples`."""
    labels, label_ids = trained.labels, {label: i for i, label in enumerate(trained.labels)}
    if exclude is None:
        exclude = trained.config.metrics.exclude_labels if trained.config else []
    check_excluded(exclude, labels)
    probabilities = trained.probabilities(examples) if examples else np.zeros((0, len(labels)), np.float32)
    predicted, confidence = probabilities.argmax(-1), probabilities.max(-1)
    # Labels the model never learned cannot be scored as classes; they are counted, and may be out-of-scope.
    known = np.array([e.label in label_ids for e in examples], bool)
    gold = np.array([label_ids.get(e.label, -1) for e in examples], np.int64)
    metrics = classification_metrics(gold[known], predicted[known], labels)
    metrics["unseen_labels"] = dict(Counter(e.label for e, k in zip(examples, known) if not k))
    if exclude:
        metrics["excluding"] = excluding(metrics["confusion_matrix"]["matrix"], labels, exclude)
    metrics["most_confused"] = most_confused(metrics["confusion_matrix"]["matrix"], labels)
    metrics["calibration"] = calibration(confidence[known], predicted[known] == gold[known])
    metrics["ece"] = metrics["calibration"]["ece"]

    fallback = trained.fallback
    answers = fallback.answer(labels, probabilities)
    if fallback.label is not None:
        metrics["fallback"] = {"label": fallback.label, "threshold": fallback.threshold,
                               "answered_fraction": float(np.mean([a != fallback.label for a in answers] or [0.0]))}
    oos_label = trained.config.fallback.out_of_scope_label if trained.config else None
    if oos_label is not None and any(e.label == oos_label for e in examples):
        said_unknown = [a in (fallback.label, oos_label) for a in answers]
        metrics["out_of_scope"] = out_of_scope(
            [e.label == oos_label for e in examples], said_unknown, [a == e.label for a, e in zip(answers, examples)]
        ) | {"label": oos_label}
    metrics["_predictions"] = list(zip(answers, confidence.tolist(), [labels[p] for p in predicted]))
    return metrics


def _add_baseline(metrics: dict, run: RunDir, examples, labels: list[str]) -> None:
    """The baseline's figures beside the run's; a run whose prepared data is gone is scored without it."""
    from sft import baseline
    from sft.errors import DataError

    try:
        metrics["baseline"] = baseline.score(run, examples, labels)
    except DataError as e:
        log.warning("no baseline: %s", e)
        return
    metrics["fine_tuning"] = baseline.compare(metrics, metrics["baseline"])


def _facts(run: RunDir, trained: TrainedRun, metrics: dict, engine: str) -> dict:
    """What the report says it scored: run, data, model, code, machine, date, and the config."""
    import datetime
    import os
    import platform
    import subprocess

    from sft import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, text=True,
                                capture_output=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
               platform.processor())
    return {"run": str(run.path), "data": metrics["data"], "model": f"{trained.config.model.encoder} ({metrics['model']})",
            "engine": engine, "sft": __version__ + (f" at {commit}" if commit else ""),
            "machine": f"{cpu}, {os.cpu_count()} cores", "date": datetime.date.today().isoformat(),
            "config": trained.config.to_yaml()}


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _errors_csv(examples, predictions) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "context", "gold", "predicted", "confidence", "source"])
    for e, (answer, confidence, _) in zip(examples, predictions):
        if answer != e.label:
            writer.writerow([e.text, " | ".join(e.context), e.label, answer, f"{confidence:.4f}", e.source or ""])
    return buffer.getvalue()


def format_table(metrics: dict) -> str:
    """A plain-text report: the averages, then one line a class, then what is confused, then the baseline."""
    lines = [
        f"{metrics['split']}: {metrics['n']} examples, accuracy {metrics['accuracy']:.4f}, "
        f"macro-F1 {metrics['macro']['f1']:.4f}, ECE {metrics['ece']:.4f}",
        f"{'':>24} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}",
    ]
    for label, m in metrics["per_class"].items():
        lines.append(f"{label[:24]:>24} {m['precision']:9.4f} {m['recall']:9.4f} {m['f1']:9.4f} {m['support']:8d}")
    for average in ("macro", "micro", "weighted"):
        m = metrics[average]
        lines.append(f"{average + ' avg':>24} {m['precision']:9.4f} {m['recall']:9.4f} {m['f1']:9.4f} {metrics['n']:8d}")
    if metrics.get("excluding"):
        e = metrics["excluding"]
        for average in ("macro", "micro"):
            m = e[average]
            lines.append(f"{average + ' excl.':>24} {m['precision']:9.4f} {m['recall']:9.4f} {m['f1']:9.4f}"
                         f"  (without {', '.join(e['labels'])})")
    if metrics["most_confused"]:
        lines.append("most confused: " + "; ".join(
            f"{p['gold']} -> {p['predicted']} ({p['count']})" for p in metrics["most_confused"][:5]))
    if metrics.get("out_of_scope"):
        o = metrics["out_of_scope"]
        lines.append(f"out-of-scope ({o['label']}): in-scope accuracy {o['in_scope_accuracy']:.4f}, "
                     f"recall {o['out_of_scope_recall']:.4f}, precision {o['out_of_scope_precision']:.4f}")
    if metrics.get("unseen_labels"):
        lines.append(f"not scored as classes (labels unseen in training): {metrics['unseen_labels']}")
    if metrics.get("baseline"):
        b, gains = metrics["baseline"], metrics["fine_tuning"]
        lines.append(f"baseline (linear on the frozen encoder): accuracy {b['accuracy']:.4f}, macro-F1 "
                     f"{b['macro']['f1']:.4f}; fine-tuning helped most: " + ", ".join(
                         f"{g['label']} ({g['f1_gain']:+.2f} F1)" for g in gains["helped"][:3]))
    return "\n".join(lines)


def format_comparison(runs: list[tuple[str, dict]]) -> str:
    """Several runs' headline metrics side by side, one column a run."""
    rows = [("examples", lambda m: f"{m['n']}"), ("accuracy", lambda m: f"{m['accuracy']:.4f}"),
            ("macro-F1", lambda m: f"{m['macro']['f1']:.4f}"), ("micro-F1", lambda m: f"{m['micro']['f1']:.4f}"),
            ("weighted-F1", lambda m: f"{m['weighted']['f1']:.4f}"),
            ("macro-F1 excl.", lambda m: f"{m['excluding']['macro']['f1']:.4f}" if "excluding" in m else "-"),
            ("micro-F1 excl.", lambda m: f"{m['excluding']['micro']['f1']:.4f}" if "excluding" in m else "-"),
            ("macro precision", lambda m: f"{m['macro']['precision']:.4f}"),
            ("macro recall", lambda m: f"{m['macro']['recall']:.4f}"), ("ECE", lambda m: f"{m['ece']:.4f}")]
    width = max(12, *(len(name) for name, _ in runs))
    lines = [f"{'':<16}" + "".join(f"{name[-width:]:>{width + 2}}" for name, _ in runs)]
    for title, cell in rows:
        lines.append(f"{title:<16}" + "".join(f"{cell(m):>{width + 2}}" for _, m in runs))
    return "\n".join(lines)
