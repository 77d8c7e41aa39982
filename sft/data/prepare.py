"""`sft prepare`: raw dialogue files to clean, de-duplicated, stratified splits and a report."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from pathlib import Path

from sft.config import DataConfig
from sft.data.clean import clean_text, dedup_key, normalize_label
from sft.data.example import SPLITS, Example
from sft.data.read import RawRow, read_rows
from sft.data.split import split_examples
from sft.errors import DataError
from sft.files import atomic_dir, is_nonempty_dir, write_json, write_text


def prepare(config: DataConfig, out: str | Path, overwrite: bool = False) -> dict:
    """Write train/validation/test.jsonl, labels.json and report.json into `out`; return the report."""
    out = Path(out)
    if is_nonempty_dir(out) and not overwrite:
        raise DataError(f"prepared folder '{out}' already exists: pass --overwrite or choose another --out")
    sources = config.sources()
    if not sources:
        raise DataError("no input files: list raw CSV files under data.files (or data.splits) in the config")
    if config.files and any(split for split, _ in sources):
        raise DataError("give either data.files (pooled, then split) or data.splits (kept as given), not both")

    report: dict = {"files": [f for _, f in sources], "rows_read": 0, "dropped": Counter()}
    rows: dict[str | None, list[RawRow]] = defaultdict(list)
    for split, path in sources:
        for row in read_rows(path, config.columns):
            report["rows_read"] += 1
            rows[split].append(row)
    if not report["rows_read"]:
        raise DataError(f"no data rows in {', '.join(report['files'])}: the files hold only a header")

    tagged = [(split, e) for split, split_rows in rows.items()
              for e in _to_examples(split_rows, config.context_turns, report["dropped"])]
    if not tagged:
        raise DataError("every row was dropped (empty text or label); check data.columns in the config")
    kept = _deduplicate(tagged, report)
    splits = _split(kept, config)
    labels = sorted({e.label for examples in splits.values() for e in examples})

    report["dropped"] = dict(report["dropped"])
    report["examples"] = {s: len(splits[s]) for s in SPLITS}
    report["labels"] = len(labels)
    report["class_counts"] = {s: dict(sorted(Counter(e.label for e in splits[s]).items())) for s in SPLITS}
    report["leakage"] = _leakage(splits)

    with atomic_dir(out, replace=overwrite) as tmp:
        for s in SPLITS:
            write_text(tmp / f"{s}.jsonl", "".join(e.to_json() + "\n" for e in splits[s]))
        write_json(tmp / "labels.json", labels)
        write_json(tmp / "report.json", report)
    return report


def _to_examples(rows: list[RawRow], context_turns: int, dropped: Counter) -> list[Example]:
    """Clean rows; with dialogue ids, order each dialogue by turn and attach previous turns."""
    dialogues: dict[str | None, list[tuple[RawRow, str]]] = defaultdict(list)
    for row in rows:
        text, label = clean_text(row.text), normalize_label(row.label)
        if not text:
            dropped["empty_text"] += 1
        elif not label:
            dropped["empty_label"] += 1
        else:
            key = row.dialogue_id.strip() if row.dialogue_id is not None else None
            dialogues[key or None].append((row, text))

    examples = []
    for dialogue_id, turns in dialogues.items():
        if dialogue_id is not None and turns[0][0].turn is not None:
            turns.sort(key=lambda t: _turn_order(t[0]))
        history: list[str] = []
        for row, text in turns:
            context = history[-context_turns:] if (dialogue_id is not None and context_turns) else []
            examples.append(Example(text, normalize_label(row.label), dialogue_id, list(context), row.source))
            history.append(text)
    return examples


def _turn_order(row: RawRow):
    turn = (row.turn or "").strip()
    try:
        return (0, float(turn), "")
    except ValueError:
        return (1, 0.0, turn)  # non-numeric turns sort after numeric ones, as text


# A duplicate found in several given splits stays in the one evaluated last, so
# that test is never trained on and keeps every example its authors put there.
_PRIORITY = {"test": 0, "validation": 1, "train": 2, None: 3}


def _deduplicate(tagged: list[tuple[str | None, Example]], report: dict) -> list[tuple[str | None, Example]]:
    """One example per (text, context); conflicting labels resolved by majority vote."""
    by_key: dict[tuple, list[tuple[str | None, Example]]] = defaultdict(list)
    for split, e in tagged:
        by_key[(dedup_key(e.text), tuple(dedup_key(c) for c in e.context))].append((split, e))
    kept, duplicates, conflicts = [], 0, 0
    for group in by_key.values():
        votes = Counter(e.label for _, e in group)
        if len(votes) > 1:
            conflicts += 1
        label = min(votes, key=lambda lab: (-votes[lab], lab))  # ties: the first label by name
        split = min((s for s, _ in group), key=_PRIORITY.__getitem__)
        representative = next(e for s, e in group if s == split)
        kept.append((split, dataclasses.replace(representative, label=label)))
        duplicates += len(group) - 1
    report["duplicates_removed"] = duplicates
    report["label_conflicts"] = conflicts
    return kept


def _split(kept: list[tuple[str | None, Example]], config: DataConfig) -> dict[str, list[Example]]:
    """Pooled examples split by size; given splits kept, and a missing one carved from train."""
    pooled = [e for s, e in kept if s is None]
    if pooled:
        return split_examples(pooled, config.validation_size, config.test_size, config.seed)
    given = {s: [e for t, e in kept if t == s] for s in SPLITS}
    if not given["train"]:
        raise DataError("data.splits has no train files: list them under data.splits.train")
    carve = {s: size for s, size in (("validation", config.validation_size), ("test", config.test_size))
             if not given[s]}
    if carve:
        carved = split_examples(given["train"], carve.get("validation", 0.0), carve.get("test", 0.0), config.seed)
        given["train"] = carved["train"]
        given.update({s: carved[s] for s in carve})
    return given


def _leakage(splits: dict[str, list[Example]]) -> dict:
    """Normalised texts found in more than one split, context aside: short replies may recur."""
    seen: dict[str, set[str]] = defaultdict(set)
    for s, examples in splits.items():
        for e in examples:
            seen[dedup_key(e.text)].add(s)
    leaked = [text for text, where in seen.items() if len(where) > 1]
    return {"texts_in_several_splits": len(leaked), "examples": leaked[:5]}
