"""Read raw CSV files into rows that remember their file and line."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sft.config import Columns
from sft.errors import DataError


@dataclass(frozen=True)
class RawRow:
    text: str
    label: str
    dialogue_id: str | None
    turn: str | None
    speaker: str | None
    source: str  # "file:line"


def read_rows(path: str | Path, columns: Columns) -> Iterator[RawRow]:
    """Rows of a CSV file with a header, mapped through `columns`.

    Quoted fields may hold newlines; `source` gives the line where a row starts.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file '{path}' not found: check data.files in the config")
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: the file is empty; expected a header row with column names")
            index = _column_index(path, [h.strip() for h in header], columns)
            line = reader.line_num + 1
            for record in reader:
                start, line = line, reader.line_num + 1
                if not any(cell.strip() for cell in record):
                    continue
                if len(record) != len(header):
                    raise DataError(
                        f"{path}:{start}: row has {len(record)} fields, the header has {len(header)}; "
                        "check quoting of commas and newlines"
                    )
                values = {key: record[i] if i is not None else None for key, i in index.items()}
                yield RawRow(**values, source=f"{path}:{start}")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: bytes at offset {e.start} are not UTF-8; re-save the file as UTF-8") from None
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e})") from None


def _column_index(path: Path, header: list[str], columns: Columns) -> dict[str, int | None]:
    index = {}
    for key in ("text", "label", "dialogue_id", "turn", "speaker"):
        name = getattr(columns, key)
        if name is None:
            index[key] = None
        elif name.strip() in header:
            index[key] = header.index(name.strip())
        else:
            raise DataError(
                f"{path}: no column '{name}' for {key} (columns found: {', '.join(header)}); "
                f"set data.columns.{key} in the config"
            )
    return index
