"""`sft prepare`: raw dialogue files to clean, de-duplicated, stratified splits and a report."""

from __future__ import annotations

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
    if not config.files:
        raise DataError("no input files: list raw CSV files under data.files in the config")

    report: dict = {"files": list(config.files), "rows_read": 0, "dropped": Counter()}
    rows = []
    for path in config.files:
        for row in read_rows(path, config.columns):
            report["rows_read"] += 1
            rows.append(row)
    if not rows:
        raise DataError(f"no data rows in {', '.join(config.files)}: the files hold only a header")

    examples = _to_examples(rows, config.context_turns, report["dropped"])
    if not examples:
        raise DataError("every row was dropped (empty text or label); check data.columns in the config")
    examples = _deduplicate(examples, report)
    splits = split_examples(examples, config.validation_size, config.test_size, config.seed)
    labels = sorted({e.label for e in examples})

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


def _deduplicate(examples: list[Example], report: dict) -> list[Example]:
    """One example per (text, context); conflicting labels resolved by majority vote."""
    by_key: dict[tuple, list[Example]] = defaultdict(list)
    for e in examples:
        by_key[(dedup_key(e.text), tuple(dedup_key(c) for c in e.context))].append(e)
    kept, duplicates, conflicts = [], 0, 0
    for group in by_key.values():
        votes = Counter(e.label for e in group)
        if len(votes) > 1:
            conflicts += 1
        label = max(votes, key=lambda lab: (votes[lab], -sorted(votes).index(lab)))
        first = next(e for e in group if e.label == label)
        kept.append(first)
        duplicates += len(group) - 1
    report["duplicates_removed"] = duplicates
    report["label_conflicts"] = conflicts
    return kept


def _leakage(splits: dict[str, list[Example]]) -> dict:
    """Normalised texts found in more than one split, context aside: short replies may recur."""
    seen: dict[str, set[str]] = defaultdict(set)
    for s, examples in splits.items():
        for e in examples:
            seen[dedup_key(e.text)].add(s)
    leaked = [text for text, where in seen.items() if len(where) > 1]
    return {"texts_in_several_splits": len(leaked), "examples": leaked[:5]}
