"""`sft audit`: the examples whose labels a model trained without them disagrees with, before training.

Train and validation are pooled and cut into `audit.folds` stratified folds (a
dialogue stays within one fold, so no utterance is judged by a model that read
its neighbours). Each fold is predicted by a model trained on the other folds for
`audit.epochs` epochs: an ordinary run directory, checkpointed as any run, so an
audit killed mid-fold resumes from that fold's last checkpoint and a finished
fold is never trained again. From the out-of-fold probabilities, cleanlab's
`find_label_issues` (confident learning) picks the suspected label errors; each
gets the model's label as a suggestion and the given label's probability as its
score (lower is more suspect). Near-duplicates, texts (with their context) equal
once case, punctuation and spacing are set aside, that carry different labels
are listed beside them.

    AUDIT/                 audit.dir, or train.run_dir + "-audit"
      plan.json            what is audited: the examples' sources, their folds, the settings
      fold-K/              fold K's run directory; predictions.npy once it has predicted its fold
      audit.csv            one row a flagged example; fill `correct` and hand it to data.labels.corrections
      audit.json           the summary
      index.html           the flagged examples to sort, filter and search, offline
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import io
import json
import logging
import re
import time
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sft.config import Config
from sft.data.corrections import DROP
from sft.data.example import Example
from sft.data.prepared import PreparedDir
from sft.errors import DataError, RunDirError, TrainingInterrupted
from sft.files import atomic_dir, is_nonempty_dir, write_json, write_text

log = logging.getLogger("sft")

CSV_COLUMNS = ("source", "text", "context", "given", "suggested", "score", "kind", "correct")
LABEL_ISSUE, NEAR_DUPLICATE = "label issue", "near duplicate"


@dataclasses.dataclass(frozen=True)
class AuditDir:
    path: Path

    @property
    def plan_file(self) -> Path:
        return self.path / "plan.json"

    def fold_dir(self, fold: int) -> Path:
        return self.path / f"fold-{fold + 1}"

    def predictions_file(self, fold: int) -> Path:
        return self.fold_dir(fold) / "predictions.npy"

    @property
    def csv_file(self) -> Path:
        return self.path / "audit.csv"

    @property
    def summary_file(self) -> Path:
        return self.path / "audit.json"

    @property
    def html_file(self) -> Path:
        return self.path / "index.html"


def audit(config: Config, data: PreparedDir, out: str | Path | None = None, overwrite: bool = False) -> dict:
    """Audit the prepared train and validation splits of `data` into `out`; return the summary.

    An audit folder of the same examples and settings is resumed; one of others
    is refused unless `overwrite`.
    """
    started = time.perf_counter()
    splits = {split: data.examples(split) for split in ("train", "validation")}
    examples = [e for split in splits.values() for e in split]
    labels = data.labels()
    given = _label_ids(examples, labels, data, config.audit.folds)
    # Each given split numbers its dialogues afresh (MELD's train and dev both start at 0).
    dialogues = [None if e.dialogue_id is None else f"{split}/{e.dialogue_id}"
                 for split, split_examples in splits.items() for e in split_examples]
    folds = assign_folds(dialogues, [e.label for e in examples], config.audit.folds, config.train.seed)
    where = AuditDir(Path(out or config.audit.dir or f"{config.train.run_dir}-audit"))
    plan = {"examples": len(examples), "labels": labels, "folds": config.audit.folds,
            "fingerprint": _fingerprint(config, examples, folds)}
    _open(where, plan, overwrite)

    probabilities = np.zeros((len(examples), len(labels)), np.float32)
    for fold in range(config.audit.folds):
        held_out = np.flatnonzero(folds == fold)
        probabilities[held_out] = _fold_predictions(config, where, fold, examples, labels, folds)
        log.info("fold %d/%d: out-of-fold accuracy %.4f on %d examples", fold + 1, config.audit.folds,
                 float((probabilities[held_out].argmax(1) == given[held_out]).mean()), len(held_out))

    flagged = find_issues(given, probabilities)
    duplicates = near_duplicate_groups(examples)
    rows = _rows(examples, labels, given, probabilities, flagged, duplicates)
    summary = {
        "audit_dir": str(where.path), "examples": len(examples), "classes": len(labels),
        "folds": config.audit.folds, "epochs": config.audit.epochs,
        "out_of_fold_accuracy": round(float((probabilities.argmax(1) == given).mean()), 4),
        "label_issues": len(flagged),
        "near_duplicate_groups": len(duplicates),
        "near_duplicate_examples": sum(len(g) for g in duplicates),
        "flagged": len(rows),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_text(where.csv_file, _csv(rows))
    write_text(where.html_file, _html(summary, rows, data))
    write_json(where.summary_file, summary)
    return summary


def assign_folds(dialogues: Sequence[str | None], labels: Sequence[str], k: int, seed: int) -> np.ndarray:
    """The fold of each example, given its dialogue (None: it stands alone) and label: a dialogue's
    utterances share one; single utterances are dealt class by class, so that every fold holds each
    class in proportion (stratified)."""
    rng = np.random.default_rng(seed)
    folds = np.full(len(labels), -1)
    sizes = np.zeros(k, np.int64)
    by_dialogue: dict[str, list[int]] = defaultdict(list)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, (dialogue, label) in enumerate(zip(dialogues, labels)):
        (by_dialogue[dialogue] if dialogue is not None else by_label[label]).append(i)
    groups = list(by_dialogue.values())
    rng.shuffle(groups)
    for group in sorted(groups, key=len, reverse=True):  # largest first onto the smallest fold: even sizes
        fold = int(np.argmin(sizes))
        folds[group] = fold
        sizes[fold] += len(group)
    offset = int(np.argmin(sizes))
    for label in sorted(by_label):
        members = rng.permutation(by_label[label])
        folds[members] = (offset + np.arange(len(members))) % k
        offset = (offset + len(members)) % k  # a small class's remainder lands on the next folds
    return folds


def find_issues(given: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Indices of suspected label errors, most suspect first (cleanlab's confident learning)."""
    from cleanlab.filter import find_label_issues

    present = np.unique(given)
    # cleanlab counts a class per column: classes no example carries (labels only test held) are left out.
    columns = probabilities[:, present]
    columns = columns / np.maximum(columns.sum(axis=1, keepdims=True), 1e-12)
    dense = np.searchsorted(present, given)
    return find_label_issues(dense, columns, return_indices_ranked_by="self_confidence")


_NOT_WORD = re.compile(r"[\W_]+")


def near_key(text: str) -> str:
    """Texts equal under this key are near-duplicates: case, accents, punctuation and spacing aside."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _NOT_WORD.sub(" ", text).strip()


def near_duplicate_groups(examples: list[Example]) -> list[list[int]]:
    """Groups of examples whose text and context are near-duplicates but whose labels differ.
    `sft prepare` already merged the exact ones (after cleaning and case folding)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        groups[(near_key(e.text), *(near_key(turn) for turn in e.context))].append(i)
    return [members for members in groups.values() if len({examples[i].label for i in members}) > 1]


# --- the folds ----------------------------------------------------------------------------------


def _open(where: AuditDir, plan: dict, overwrite: bool) -> None:
    """Start the audit folder, or go on with the one there if it audits the same thing."""
    if where.plan_file.is_file() and not overwrite:
        before = json.loads(where.plan_file.read_text(encoding="utf-8"))
        if before.get("fingerprint") == plan["fingerprint"]:
            done = sum(where.predictions_file(f).is_file() for f in range(plan["folds"]))
            log.info("resuming the audit in %s: %d of %d folds predicted", where.path, done, plan["folds"])
            return
        raise RunDirError(f"'{where.path}' holds an audit of other data or settings: pass --overwrite to "
                          "replace it, or --out to choose another folder")
    if is_nonempty_dir(where.path) and not overwrite:
        raise RunDirError(f"'{where.path}' exists and is not an audit: pass --overwrite or --out")
    with atomic_dir(where.path, replace=True) as tmp:
        write_json(tmp / "plan.json", plan)


def _fold_predictions(config: Config, where: AuditDir, fold: int, examples: list[Example], labels: list[str],
                      folds: np.ndarray) -> np.ndarray:
    """The fold's held-out probabilities: read back if predicted, else trained (or resumed) and predicted."""
    from sft.rundir import RunDir
    from sft.train import train
    from sft.trained import load_trained

    file = where.predictions_file(fold)
    held_out = [e for e, f in zip(examples, folds) if f == fold]
    if file.is_file():
        return np.load(file)
    run_path = where.fold_dir(fold)
    data = _fold_data(run_path / "data", examples, labels, folds, fold)
    run = RunDir(run_path / "run")
    resume = any(run.checkpoints.glob("ckpt-*.index"))
    log.info("fold %d/%d: %s on %d examples, predicting %d", fold + 1, config.audit.folds,
             "resuming" if resume else "training", len(folds) - len(held_out), len(held_out))
    fold_config = _fold_config(config, run.path)
    if resume:
        fold_config = run.resumed(fold_config)
    try:
        train(fold_config, data, run, resume=resume)
    except TrainingInterrupted as e:
        raise TrainingInterrupted(f"{str(e).split(';')[0]} in fold {fold + 1}; checkpoint saved. Continue with "
                                  "the same `sft audit` command") from None
    probabilities = load_trained(run, "last").probabilities(held_out)
    np.save(file.with_suffix(".tmp.npy"), probabilities)
    file.with_suffix(".tmp.npy").replace(file)  # whole or absent: a fold is done once this exists
    _release_models()
    return probabilities


def _fold_data(path: Path, examples: list[Example], labels: list[str], folds: np.ndarray, fold: int) -> PreparedDir:
    """The other folds to train on, this one as validation (for the log only: the last weights predict)."""
    if not (path / "labels.json").is_file():
        splits = {"train": [e for e, f in zip(examples, folds) if f != fold],
                  "validation": [e for e, f in zip(examples, folds) if f == fold], "test": []}
        with atomic_dir(path, replace=True) as tmp:
            PreparedDir(tmp).write(splits, labels, {"audit_fold": fold + 1})
    return PreparedDir(path)


def _fold_config(config: Config, run_path: Path) -> Config:
    """The run's experiment with the audit's schedule: fixed epochs, no early stop, no baseline or fallback."""
    train = dataclasses.replace(config.train, run_dir=str(run_path), epochs=config.audit.epochs, baseline=False,
                                early_stopping=dataclasses.replace(config.train.early_stopping, patience=0))
    return dataclasses.replace(config, train=train, fallback=dataclasses.replace(config.fallback, label=None))


def _release_models() -> None:
    """Five models in one process: drop each fold's graphs before the next is built."""
    import gc

    import tf_keras

    tf_keras.backend.clear_session()
    gc.collect()


def _label_ids(examples: list[Example], labels: list[str], data: PreparedDir, folds: int) -> np.ndarray:
    ids = {label: i for i, label in enumerate(labels)}
    unknown = {e.label for e in examples} - ids.keys()
    if unknown:
        raise DataError(f"{data.path} holds labels missing from labels.json ({', '.join(sorted(unknown)[:3])}): "
                        "prepare the data again")
    if len(examples) < max(2 * len(labels), folds):
        raise DataError(f"{len(examples)} train and validation examples for {len(labels)} classes in {folds} folds: "
                        "too few to audit")
    return np.array([ids[e.label] for e in examples])


def _fingerprint(config: Config, examples: list[Example], folds: np.ndarray) -> str:
    """Same examples, folds and fold training: the same audit (the folder's checkpoints still apply)."""
    digest = hashlib.sha256()
    for e, fold in zip(examples, folds):
        digest.update(json.dumps([e.source, e.text, e.label, e.context, int(fold)]).encode())
    settings = {"model": dataclasses.asdict(config.model), "train": dataclasses.asdict(_fold_config(config, Path()).train),
                "audit": [config.audit.folds, config.audit.epochs], "context_turns": config.data.context_turns}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


# --- what is written ----------------------------------------------------------------------------


def _rows(examples: list[Example], labels: list[str], given: np.ndarray, probabilities: np.ndarray,
          flagged: np.ndarray, duplicates: list[list[int]]) -> list[dict]:
    """The flagged examples: label issues most suspect first, then the near-duplicate groups."""
    kinds: dict[int, list[str]] = defaultdict(list)
    order = [int(i) for i in flagged]
    for i in order:
        kinds[i].append(LABEL_ISSUE)
    for group in sorted(duplicates, key=lambda g: min(probabilities[i, given[i]] for i in g)):
        for i in group:
            if not kinds[i]:
                order.append(i)
            kinds[i].append(NEAR_DUPLICATE)
    rows = []
    for i in order:
        e = examples[i]
        rows.append({"source": e.source or "", "text": e.text, "context": " | ".join(e.context),
                     "given": e.label, "suggested": labels[int(probabilities[i].argmax())],
                     "score": round(float(probabilities[i, given[i]]), 4), "kind": ", ".join(kinds[i]), "correct": ""})
    return rows


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _html(summary: dict, rows: list[dict], data: PreparedDir) -> str:
    from sft.report import page_script, page_style

    template = (Path(__file__).parent / "audit.html").read_text(encoding="utf-8")
    facts = {"data": str(data.path), **{k: summary[k] for k in ("examples", "classes", "folds", "epochs",
                                                                 "out_of_fold_accuracy", "label_issues",
                                                                 "near_duplicate_groups")}}
    payload = json.dumps({"facts": facts, "rows": rows, "drop": DROP}, ensure_ascii=False).replace("</", "<\\/")
    return (template.replace("__STYLE__", page_style()).replace("__SCRIPT__", page_script()).replace("__TITLE__", html.escape(f"Audit of {data.path}"))
            .replace("__DROP__", html.escape(DROP)).replace("__DATA__", payload))


def format_summary(summary: dict) -> str:
    return (f"audited {summary['examples']} examples ({summary['classes']} classes) in {summary['folds']} folds of "
            f"{summary['epochs']} epoch(s): out-of-fold accuracy {summary['out_of_fold_accuracy']:.4f}; "
            f"{summary['label_issues']} suspected label errors, {summary['near_duplicate_groups']} near-duplicate "
            f"groups with different labels ({summary['near_duplicate_examples']} examples)\n"
            f"  {Path(summary['audit_dir']) / 'audit.csv'}: review it, fill `correct` (a class or {DROP}) and name it "
            f"as data.labels.corrections\n  {Path(summary['audit_dir']) / 'index.html'}")

