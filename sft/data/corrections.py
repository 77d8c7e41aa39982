"""Reviewed label fixes, applied by `sft prepare` so that a fix is a file in review, not an edit of raw data.

`data.labels.corrections` names a CSV with a header holding at least `source` and
`correct`: `source` is a raw row as "file:line" (the form `sft prepare` writes into
each example and `sft audit` into audit.csv), `correct` its class, or `<drop>` to
keep the row out of the examples (it stays context for the turns after it). Rows
whose `correct` is empty are skipped, so audit.csv itself, filled in where a
reviewer agrees, is a corrections file.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path

from sft.data.dialogue import Utterance
from sft.errors import DataError

DROP = "<drop>"
COLUMNS = ("source", "correct")


def read_corrections(path: str | Path) -> dict[str, str]:
    """source -> corrected class or DROP; a row naming a source twice with two answers is refused."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"corrections file '{path}' not found: check data.labels.corrections in the config")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"corrections file '{path}' has no {' or '.join(repr(c) for c in missing)} column: "
                            "expected a header with 'source' (file:line) and 'correct' (a class or <drop>)")
        out: dict[str, str] = {}
        for line, row in enumerate(reader, 2):
            source, correct = (row.get("source") or "").strip(), (row.get("correct") or "").strip()
            if not correct:
                continue
            if not source:
                raise DataError(f"{path}:{line}: 'correct' is set but 'source' is empty; expected file:line")
            if out.get(source, correct) != correct:
                raise DataError(f"{path}:{line}: {source} is corrected twice, to '{out[source]}' and '{correct}'")
            out[source] = correct
    return out


def apply_corrections(utterances: list[Utterance], corrections: dict[str, str], path: str | Path,
                      ) -> tuple[list[Utterance | None], dict]:
    """Each utterance as `corrections` leave it (None where dropped), in order, and counts for the data report.

    Every correction must name a row that was read, with a class some row carries
    (a typo in either would silently fix nothing, or invent a class).
    """
    sources = {u.example.source for u in utterances}
    unknown = [source for source in corrections if source not in sources]
    if unknown:
        raise DataError(f"{len(unknown)} correction(s) in '{path}' name rows that were not read as examples "
                        f"(e.g. {unknown[0]}): the raw files or their lines changed since the review")
    classes = {u.example.label for u in utterances}
    strange = sorted({c for c in corrections.values() if c != DROP and c not in classes})
    if strange:
        raise DataError(f"correction(s) in '{path}' name a class no row carries: {', '.join(strange[:5])}; "
                        f"expected one of the data's classes or {DROP}")
    counts: Counter = Counter()
    out: list[Utterance | None] = []
    for u in utterances:
        correct = corrections.get(u.example.source, u.example.label)
        if correct == DROP:
            counts["dropped"] += 1
            out.append(None)
            continue
        if correct != u.example.label:
            counts["relabelled"] += 1
            u = dataclasses.replace(u, example=dataclasses.replace(u.example, label=correct))
        elif u.example.source in corrections:
            counts["unchanged"] += 1
        out.append(u)
    return out, {"file": str(path), **{k: counts[k] for k in ("relabelled", "dropped", "unchanged")}}
