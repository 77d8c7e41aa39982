"""`sft prepare`: raw dialogue files to clean, de-duplicated, stratified splits and a report.

The one reader of raw data: `sft train` reads only what this writes.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, defaultdict
from pathlib import Path

from sft.config import DataConfig
from sft.data.clean import dedup_key
from sft.data.corrections import apply_corrections, read_corrections
from sft.data.dialogue import Utterance, dialogue_examples
from sft.data.example import SPLITS, Example
from sft.data.labels import rare_classes
from sft.data.lengths import WordPieceCounter, length_report
from sft.data.prepared import PreparedDir
from sft.data.read import RawRow, RowProblems, read_rows
from sft.data.split import split_examples
from sft.errors import ConfigError, DataError
from sft.files import atomic_dir, is_nonempty_dir

_SAMPLE = 5  # how many leaked texts and conflicts the report shows


def prepare(
    config: DataConfig, out: str | Path, overwrite: bool = False, strict: bool = False, vocab: str | Path | None = None
) -> dict:
    """Write train/validation/test.jsonl, labels.json and report.json into `out`; return the report.

    Row-level problems (ragged rows, undecodable lines, empty texts or labels)
    are counted in the report under `dropped`, or raised when `strict`. With
    `vocab` (a BERT vocab.txt), lengths are reported in word pieces, else in
    white-space tokens.
    """
    started = time.perf_counter()
    out = Path(out)
    if is_nonempty_dir(out) and not overwrite:
        raise DataError(f"prepared folder '{out}' already exists: pass --overwrite or choose another --out")
    sources = config.sources()
    if not sources:
        raise DataError("no input files: list raw files under data.files (or data.splits) in the config")
    if config.files and any(split for split, _ in sources):
        raise DataError("give either data.files (pooled, then split) or data.splits (kept as given), not both")
    if config.context_speaker and config.columns.speaker is None:
        raise ConfigError("data.context_speaker needs data.columns.speaker: name the speaker column or set it false")

    # 1. read every file; each given split (or the pooled files) is one dialogue-id space
    problems = RowProblems(strict)
    report: dict = {"files": [], "rows_read": 0}
    rows: dict[str | None, list[RawRow]] = defaultdict(list)
    # What happened to each given split's rows (or the pooled rows), by reason
    ledger: dict[str | None, Counter] = defaultdict(Counter)
    for split, path in sources:
        before, problems_before = len(rows[split]), Counter(problems.counts)
        rows[split].extend(read_rows(path, config.columns, format=config.format, encoding=config.encoding,
                                     problems=problems))
        ledger[split].update(problems.counts - problems_before)
        read = len(rows[split]) - before + (problems.counts - problems_before).total()
        ledger[split]["rows_read"] += read
        report["files"].append({"path": path, "split": split or "pooled", "rows": read})
    report["rows_read"] = sum(f["rows"] for f in report["files"])
    if not report["rows_read"]:
        raise DataError(f"no data rows in {', '.join(f for _, f in sources)}: the files hold only a header")

    # 2. clean, order dialogues, attach context
    tagged = []
    for split, split_rows in rows.items():
        problems_before = Counter(problems.counts)
        tagged += [(split, u) for u in dialogue_examples(split_rows, config, problems)]
        ledger[split].update(problems.counts - problems_before)
    if not tagged:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(problems.counts.items()))
        raise DataError(f"every row was dropped ({reasons}); check data.columns in the config")
    dropped = Counter(problems.counts)
    if config.labels.corrections:  # reviewed fixes go in before duplicates are merged by label
        tagged = _correct(tagged, config.labels.corrections, report, dropped, ledger)

    # 3. one example per (text, context), conflicts resolved within a split; then rare classes
    kept = _deduplicate(tagged, config, report, dropped, ledger)
    kept = _handle_rare(kept, config, report, dropped, ledger)
    if not kept:
        raise DataError("every example was dropped (label conflicts or rare classes); see data.labels in the config")

    # 4. split, then check what the splits hold
    splits = _split(kept, config)
    # The classes the model can learn: a label only a given test split holds is scored as unseen.
    labels = sorted({e.label for s in ("train", "validation") for e in splits[s]})
    if len(labels) < 2:
        raise DataError(f"the data holds {len(labels)} class ({', '.join(labels)}) after cleaning and "
                        "de-duplication; a classifier needs at least 2: check data.columns.label and data.labels")
    report["dropped"] = dict(sorted(dropped.items()))
    report["problems"] = problems.messages
    report["examples"] = {s: len(splits[s]) for s in SPLITS}
    report["labels"] = len(labels)
    report["class_counts"] = {s: dict(sorted(Counter(e.label for e in splits[s]).items())) for s in SPLITS}
    every = [e for s in SPLITS for e in splits[s]]
    if vocab is not None:
        report["lengths"] = {**length_report(every, WordPieceCounter(vocab), "word_pieces"), "vocab": str(vocab)}
    else:
        report["lengths"] = length_report(every, None, "whitespace_tokens")
    report["leakage"] = _leakage(splits)
    report["by_split"] = _by_split(ledger, splits)
    report["imbalance"] = imbalance(report["class_counts"]["train"])
    report["seconds"] = round(time.perf_counter() - started, 2)

    # 5. write under a temporary name, then rename into place
    with atomic_dir(out, replace=overwrite) as tmp:
        PreparedDir(tmp).write(splits, labels, report)
    return report


def _correct(tagged: list[tuple[str | None, Utterance]], path: str, report: dict, dropped: Counter,
             ledger: dict[str | None, Counter]) -> list[tuple[str | None, Utterance]]:
    """`data.labels.corrections` applied; what it changed counted in the report and each split's ledger.

    A correction names one row, as audit.csv names the example its duplicates were merged
    into: the row's duplicates within its split follow it, or the merge would outvote the fix.
    """
    corrections = read_corrections(path)
    keys = {u.example.source: (split, *_example_key(u.example)) for split, u in tagged}
    named = {keys[source]: correct for source, correct in corrections.items() if source in keys}
    for source, key in keys.items():
        if key in named:
            corrections.setdefault(source, named[key])
    fixed, report["corrections"] = apply_corrections([u for _, u in tagged], corrections, path)
    out = []
    for (split, before), after in zip(tagged, fixed):
        if after is None:
            dropped["corrected_to_drop"] += 1
            ledger[split]["corrected_to_drop"] += 1
            continue
        if after.example.label != before.example.label:
            ledger[split]["labels_changed"] += 1
        out.append((split, after))
    return out


# A given split outranks the ones after it: a copy of a test example is removed from validation
# and train, a copy of a validation example from train, whatever their labels, so that nothing
# evaluated is trained on and no given split is rewritten by another.
_PRIORITY = {"test": 0, "validation": 1, "train": 2, None: 3}
_DROP_REASON = {"test": "copy_of_test", "validation": "copy_of_validation"}


def _deduplicate(tagged: list[tuple[str | None, Utterance]], config: DataConfig, report: dict,
                 dropped: Counter, ledger: dict[str | None, Counter]) -> list[tuple[str | None, Example]]:
    """One example per normalised (text, context) within each split; a given test split kept as given.

    Duplicates are `exact` when their raw text and context are identical,
    `normalised` when they are equal only after cleaning and case folding. A
    group under several labels is a conflict: with "majority" it keeps its most
    frequent label and a tie drops it; with "drop" it is dropped. A given test
    split keeps every row and label (`data.dedup_given_test` removes its exact
    duplicates); copies of its examples leave the other splits (see _PRIORITY).
    """
    groups: dict[tuple, list[tuple[str | None, Utterance]]] = defaultdict(list)
    for split, u in tagged:
        groups[_example_key(u.example)].append((split, u))

    kept, totals, sample = [], Counter(), []
    for group in groups.values():
        if len(group) == 1:  # most examples: nothing to merge
            kept.append((group[0][0], group[0][1].example))
            continue
        top = min((s for s, _ in group), key=_PRIORITY.__getitem__)
        members = [u for s, u in group if s == top]
        for split, _ in group:
            if split != top:  # a copy of an example of a split that outranks this one
                dropped[_DROP_REASON[top]] += 1
                ledger[split][_DROP_REASON[top]] += 1
        if top == "test" and not config.dedup_given_test:
            kept += [("test", u.example) for u in members]
            ledger["test"]["duplicates_kept"] += len(members) - 1
            continue
        if top == "test":  # exact duplicates only: the same raw text, context and label
            distinct = list({(u.raw, u.example.label): u for u in members}.values())
            kept += [("test", u.example) for u in distinct]
            ledger["test"]["duplicates_removed"] += len(members) - len(distinct)
            totals["exact"] += len(members) - len(distinct)
            continue
        example = _resolve(members, config.labels.conflicts, totals, sample, ledger[top])
        if example is None:
            dropped["label_conflict"] += len(members)
            ledger[top]["label_conflict"] += len(members)
        else:
            kept.append((top, example))
    report["label_conflicts"] = totals["conflicts"]
    report["duplicates_removed"] = totals["exact"] + totals["normalised"]
    report["duplicates"] = {"exact": totals["exact"], "normalised": totals["normalised"]}
    report["conflict_resolution"] = config.labels.conflicts
    report["conflict_sample"] = sample
    return kept


def _example_key(e: Example) -> tuple:
    """Examples equal under this key are duplicates: text and context, cleaned and case folded."""
    return (dedup_key(e.text), *(dedup_key(c) for c in e.context))


def _resolve(members: list[Utterance], conflicts: str, totals: Counter, sample: list,
             ledger: Counter) -> Example | None:
    """The one example a split keeps of its duplicates; None where their labels conflict past resolving."""
    votes = Counter(u.example.label for u in members).most_common()
    label = votes[0][0]
    if len(votes) > 1:
        totals["conflicts"] += 1
        ledger["label_conflicts"] += 1
        if conflicts == "drop" or votes[0][1] == votes[1][1]:
            label = None
        if len(sample) < _SAMPLE:
            e = members[0].example
            sample.append({"text": e.text, "context": e.context, "labels": dict(votes), "kept": label})
        if label is None:
            return None
    distinct = len({u.raw for u in members})
    totals["exact"] += len(members) - distinct
    totals["normalised"] += distinct - 1
    ledger["duplicates_removed"] += len(members) - 1
    # The majority label is some member's own: no example's label is ever rewritten.
    return next(u.example for u in members if u.example.label == label)


def _handle_rare(kept: list[tuple[str | None, Example]], config: DataConfig, report: dict,
                 dropped: Counter, ledger: dict[str | None, Counter]) -> list[tuple[str | None, Example]]:
    """Classes under `data.labels.min_count` examples dropped, or merged into `data.labels.other`;
    counted and applied outside a given test split, which keeps its gold labels."""
    counts = Counter(e.label for split, e in kept if split != "test")
    fate = rare_classes(counts, config.labels)
    report["rare_labels"] = {label: counts[label] for label in fate}
    if not fate:
        return kept
    out = []
    for split, e in kept:
        if e.label in fate and split != "test":
            if fate[e.label] is None:
                dropped["rare_label"] += 1
                ledger[split]["rare_label"] += 1
                continue
            e = dataclasses.replace(e, label=fate[e.label])
            ledger[split]["labels_changed"] += 1
        out.append((split, e))
    return out


def _split(kept: list[tuple[str | None, Example]], config: DataConfig) -> dict[str, list[Example]]:
    """Pooled examples split by size; given splits kept, and a missing one carved from train."""
    pooled = [e for s, e in kept if s is None]
    if pooled:
        return split_examples(pooled, config.validation_size, config.test_size, config.seed)
    given = {s: [e for t, e in kept if t == s] for s in SPLITS}
    if not given["train"]:
        raise DataError("data.splits has no train examples: list train files under data.splits.train")
    carve = {s: size for s, size in (("validation", config.validation_size), ("test", config.test_size))
             if not given[s]}
    if carve:
        carved = split_examples(given["train"], carve.get("validation", 0.0), carve.get("test", 0.0), config.seed)
        given["train"] = carved["train"]
        given.update({s: carved[s] for s in carve})
    return given


def _by_split(ledger: dict[str | None, Counter], splits: dict[str, list[Example]]) -> dict:
    """What happened to each given split's rows (or the pooled ones) on the way to its examples."""
    out = {}
    for source, counts in ledger.items():
        counts = Counter(counts)
        read = counts.pop("rows_read", 0)
        entry = {"rows_read": read,
                 "dropped": {reason: n for reason, n in sorted(counts.items()) if reason not in _NOT_DROPS},
                 **{key: counts.get(key, 0) for key in _NOT_DROPS}}
        if source is not None:
            entry["examples"] = len(splits[source])
        out[source or "pooled"] = entry
    if out.keys() - {"pooled"}:  # given splits: a missing one was carved from train's examples
        out |= {s: {"carved_from_train": len(splits[s])} for s in SPLITS if s not in out and splits[s]}
    return out


# Counted per split beside the drops; `labels_changed`: a correction, or a rare class merged into `other`.
_NOT_DROPS = ("duplicates_removed", "duplicates_kept", "label_conflicts", "labels_changed")

# When the largest class holds more than half of train, or a class under 1% of it, accuracy and
# weighted-F1 say little about the small classes.
_MAJORITY, _RARE_SHARE = 0.5, 0.01


def imbalance(train_counts: dict[str, int]) -> dict:
    """How unevenly train's classes are filled, and, if badly, the settings that address it."""
    total = sum(train_counts.values())
    if not total:
        return {}
    largest = max(train_counts, key=train_counts.get)
    share = train_counts[largest] / total
    rare = sorted(label for label, n in train_counts.items() if n / total < _RARE_SHARE)
    out = {"largest": {"label": largest, "share": round(share, 4)},
           "under_1_percent": {label: round(train_counts[label] / total, 4) for label in rare}}
    if share > _MAJORITY or rare:
        out["advice"] = (
            f"imbalanced train split ({largest} holds {share:.0%}"
            + (f"; {', '.join(rare)} under 1%" if rare else "") + "): consider train.class_weights: balanced, "
            f"and train.select_metric: macro_f1, or macro_f1_excluding with metrics.exclude_labels: [{largest}]")
    return out


def _leakage(splits: dict[str, list[Example]]) -> dict:
    """Normalised texts found in more than one split, context aside (short replies may recur
    legitimately), and whole examples, text with context, which should never recur."""
    texts: dict[str, set[str]] = defaultdict(set)
    examples: dict[tuple, set[str]] = defaultdict(set)
    for s, split in splits.items():
        for e in split:
            texts[dedup_key(e.text)].add(s)
            examples[_example_key(e)].add(s)
    leaked = [text for text, where in texts.items() if len(where) > 1]
    return {
        "texts_in_several_splits": len(leaked),
        "examples_in_several_splits": sum(len(where) > 1 for where in examples.values()),
        "sample": leaked[:_SAMPLE],
    }


def format_summary(report: dict, out: str | Path) -> str:
    """The report as a few lines for a person reading stderr."""
    examples = report["examples"]
    lines = [
        f"prepared {out}: {report['rows_read']} rows read from {len(report['files'])} file(s), "
        f"{report['labels']} labels; train/validation/test = " + "/".join(str(examples[s]) for s in SPLITS),
        "  dropped: " + (", ".join(f"{reason} {n}" for reason, n in report["dropped"].items()) or "none"),
        f"  duplicates removed: {report['duplicates_removed']} ({report['duplicates']['exact']} exact, "
        f"{report['duplicates']['normalised']} normalised); label conflicts: {report['label_conflicts']} "
        f"({report['conflict_resolution']})",
    ]
    if report.get("corrections"):
        c = report["corrections"]
        lines.append(f"  corrections from {c['file']}: {c['relabelled']} relabelled, {c['dropped']} dropped, "
                     f"{c['unchanged']} already so")
    if report["rare_labels"]:
        lines.append("  rare classes: " + ", ".join(f"{label} ({n})" for label, n in report["rare_labels"].items()))
    counts = report["class_counts"]
    if report["labels"] <= 20:
        width = max(len(label) for split in counts.values() for label in split) if report["labels"] else 5
        lines.append(f"  {'class':<{width}}  " + "  ".join(f"{s:>10}" for s in SPLITS))
        for label in sorted({label for split in counts.values() for label in split}):
            lines.append(f"  {label:<{width}}  " + "  ".join(f"{counts[s].get(label, 0):>10}" for s in SPLITS))
    else:
        for s in SPLITS:
            if counts[s]:
                low, high = min(counts[s].values()), max(counts[s].values())
                lines.append(f"  {s}: {len(counts[s])} classes, {low} to {high} examples a class")
    lengths = report["lengths"]
    lines.append(
        f"  length in {lengths['unit'].replace('_', ' ')}: "
        + "; ".join(f"{part} " + " ".join(f"{k} {v}" for k, v in lengths[part].items()) for part in ("text", "packed"))
    )
    leakage = report["leakage"]
    lines.append(
        f"  leakage: {leakage['texts_in_several_splits']} texts in several splits (context aside), "
        f"{leakage['examples_in_several_splits']} with their context"
        + (f"; e.g. {', '.join(repr(t) for t in leakage['sample'][:3])}" if leakage["sample"] else "")
    )
    by_split = report.get("by_split", {})
    if any(source != "pooled" for source in by_split):
        for source, entry in by_split.items():
            if "carved_from_train" in entry:
                lines.append(f"  {source}: {entry['carved_from_train']} examples carved from train")
                continue
            drops = ", ".join(f"{reason} {n}" for reason, n in entry["dropped"].items()) or "none dropped"
            lines.append(f"  {source}: {entry['rows_read']} rows read -> {entry.get('examples', '?')} examples; {drops}; "
                         f"duplicates removed {entry['duplicates_removed']}, kept {entry['duplicates_kept']}; "
                         f"label conflicts {entry['label_conflicts']}; labels changed {entry['labels_changed']}")
    if report.get("imbalance", {}).get("advice"):
        lines.append("  " + report["imbalance"]["advice"])
    for reason, messages in report["problems"].items():
        lines.append(f"  first {reason}: {messages[0]}")
    return "\n".join(lines)
