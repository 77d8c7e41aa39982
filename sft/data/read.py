"""Read raw CSV, TSV and JSON Lines files into rows that remember their file and line.

Problems with a whole file (missing, empty, a column missing, the wrong
encoding, no label anywhere) are a `DataError`. Problems with a single row
(a ragged row, an undecodable line, a line that is not JSON) go to a
`RowProblems`, which counts them, or raises at once when strict.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sft.config import Columns
from sft.errors import ConfigError, DataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_COLUMN_KEYS = ("text", "label", "dialogue_id", "turn", "speaker")
# More undecodable rows than this share of a file means the encoding is wrong, not a few rows.
_MAX_UNDECODABLE_SHARE = 0.01
_MESSAGES_KEPT = 5
_SURROGATE = re.compile("[\ud800-\udfff]")
# The csv module refuses a field over 128 KiB, and with it the whole file. A chat message that
# long is a paste, not an error: it is read, and the tokenizer keeps what max_seq_length allows.
csv.field_size_limit(2**31 - 1)


@dataclass(frozen=True)
class RawRow:
    text: str
    label: str
    dialogue_id: str | None
    turn: str | None
    speaker: str | None
    source: str  # "file:line" where the row starts


class RowProblems:
    """Row-level problems in otherwise good files: counted by reason with the first few messages, or,
    when `strict`, raised as a `DataError` at the first one."""

    def __init__(self, strict: bool = True):
        self.strict = strict
        self.counts: Counter = Counter()
        self.messages: dict[str, list[str]] = {}

    def add(self, reason: str, message: str) -> None:
        if self.strict:
            raise DataError(f"{message} (an error under --strict; without it such rows are dropped and counted)")
        self.counts[reason] += 1
        kept = self.messages.setdefault(reason, [])
        if len(kept) < _MESSAGES_KEPT:
            kept.append(message)


def read_rows(
    path: str | Path,
    columns: Columns,
    *,
    format: str = "auto",
    encoding: str = "utf-8",
    problems: RowProblems | None = None,
) -> Iterator[RawRow]:
    """Rows of a CSV or TSV file with a header, or of a JSON Lines file, mapped through `columns`.

    Quoted fields may hold newlines; `source` gives the line where a row starts.
    Without `problems`, the first bad row raises.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file '{path}' not found: check data.files (or data.splits) in the config")
    kind = file_format(path, format)
    problems = RowProblems(strict=True) if problems is None else problems
    lines = _Lines(path, encoding)
    if kind == "jsonl":
        rows = _jsonl_rows(path, lines, columns, problems)
    else:
        rows = _table_rows(path, lines, columns, problems, "\t" if kind == "tsv" else ",")

    first, count, labelled = None, 0, 0
    for row in rows:
        first = first or row
        count += 1
        labelled += bool(row.label.strip())
        yield row
    undecodable = len(lines.bad_rows)
    if undecodable > _MAX_UNDECODABLE_SHARE * (count + undecodable):
        raise DataError(
            f"{lines.bad[lines.bad_rows[0]]} ({undecodable} of {count + undecodable} rows undecodable: "
            f"the file is not {encoding})"
        )
    if first is not None and not labelled:
        raise DataError(
            f"{first.source}: column '{columns.label}' is empty on all {count} rows; expected a label on each "
            "row; check that data.columns.label names the label column"
        )


def file_format(path: Path, format: str) -> str:
    """'csv', 'tsv' or 'jsonl': as configured, or from the file name."""
    if format != "auto":
        return format
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"cannot tell the format of '{path}' from its name (known endings: {', '.join(FORMATS)}): "
            "set data.format to csv, tsv or jsonl"
        )
    return kind


class _Lines:
    """A file's lines, decoded one at a time and numbered from 1.

    An undecodable line is decoded with replacement characters, so the CSV
    parser keeps its place, and its message is kept in `bad` for the row it
    belongs to.
    """

    def __init__(self, path: Path, encoding: str):
        try:
            codec = codecs.lookup(encoding)
        except LookupError:
            raise ConfigError(f"data.encoding: '{encoding}' is not a known encoding (e.g. utf-8, cp1252, latin-1)") from None
        self.path, self.encoding = path, encoding
        self.utf8 = codec.name == "utf-8"
        self.bad: dict[int, str] = {}  # line number -> message
        self.bad_rows: list[int] = []  # first lines of rows dropped as undecodable
        self.number = 0  # lines read so far

    def __iter__(self) -> Iterator[str]:
        data = self.path.read_bytes()
        if not data.strip():
            raise DataError(f"{self.path}:1: the file is empty; expected a header row or a JSON object a line")
        if "\n".encode(self.encoding) != b"\n":  # UTF-16 and friends: lines cannot be cut as bytes
            yield from self._whole(data)
            return
        if self.utf8 and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
        for line in data.splitlines(keepends=True):  # \n, \r\n and \r: csv sees each ending as written
            self.number += 1
            try:
                yield line.decode(self.encoding)
            except UnicodeDecodeError as e:
                column = len(line[: e.start].decode(self.encoding, "replace")) + 1
                self.bad[self.number] = (
                    f"{self.path}:{self.number}:{column}: found bytes {line[e.start:e.end].hex(' ')}, expected "
                    f"{self.encoding} text; set data.encoding to the file's encoding (e.g. cp1252) or re-save it as UTF-8"
                )
                yield line.decode(self.encoding, "replace")

    def _whole(self, data: bytes) -> Iterator[str]:
        try:
            text = data.decode(self.encoding)
        except UnicodeDecodeError as e:
            line = data[: e.start].decode(self.encoding, "replace").count("\n") + 1
            raise DataError(
                f"{self.path}:{line}: found bytes {data[e.start:e.end].hex(' ')} (offset {e.start}), expected "
                f"{self.encoding} text; set data.encoding to the file's encoding"
            ) from None
        # StringIO's newline="" splits at \n, \r\n and \r only; str.splitlines would also split at \x1c or U+2028.
        for self.number, line in enumerate(io.StringIO(text, newline=""), 1):
            yield line

    def undecodable(self, start: int, end: int) -> str | None:
        """The message of the first undecodable line in [start, end), if any."""
        if self.bad:
            for number in range(start, end):
                if number in self.bad:
                    self.bad_rows.append(start)
                    return self.bad[number]
        return None


def _table_rows(path: Path, lines: _Lines, columns: Columns, problems: RowProblems, delimiter: str):
    reader = csv.reader(iter(lines), delimiter=delimiter)
    try:
        header = next((record for record in reader if any(cell.strip() for cell in record)), None)
        if header is None:
            raise DataError(f"{path}:1: the file is empty; expected a header row with column names")
        if lines.undecodable(1, reader.line_num + 1):
            raise DataError(f"{lines.bad[min(lines.bad)]} (in the header: the file is not {lines.encoding})")
        index = _column_index(path, [h.strip() for h in header], columns)
        width = len(header)
        line = reader.line_num + 1
        for record in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            message = lines.undecodable(start, line)
            if message:
                problems.add("undecodable", message)
                continue
            if len(record) > width and not any(cell.strip() for cell in record[width:]):
                record = record[:width]  # trailing empty cells, as spreadsheets write them
            if len(record) != width:
                span = f" (lines {start}-{line - 1})" if line - 1 > start else ""
                problems.add(
                    "ragged_row",
                    f"{path}:{start}: row has {len(record)} fields, the header has {width}{span}; "
                    "check quoting of commas and newlines",
                )
                continue
            yield RawRow(**{key: record[i] if i is not None else None for key, i in index.items()},
                         source=f"{path}:{start}")
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed {'TSV' if delimiter == chr(9) else 'CSV'} ({e})") from None


def _jsonl_rows(path: Path, lines: _Lines, columns: Columns, problems: RowProblems):
    names = None
    for line in lines:
        number = lines.number
        if not line.strip():
            continue
        message = lines.undecodable(number, number + 1)
        if message:
            problems.add("undecodable", message)
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            problems.add("malformed_json", f"{path}:{number}:{e.colno}: not JSON ({e.msg}); expected one JSON object a line")
            continue
        if not isinstance(record, dict):
            problems.add("malformed_json", f"{path}:{number}: found a JSON {type(record).__name__}, expected an object")
            continue
        record = {str(key).strip(): value for key, value in record.items()}
        if names is None:  # the first object names the columns, as a header would
            keys = list(record)
            names = {key: None if i is None else keys[i]
                     for key, i in _column_index(path, keys, columns, line=number).items()}
        values = {key: (_json_cell(record.get(name)) if name is not None else None) for key, name in names.items()}
        yield RawRow(**{**values, "text": values["text"] or "", "label": values["label"] or ""},
                     source=f"{path}:{number}")


def _json_cell(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)  # a lone "\ud800" escape cannot be written back as UTF-8
    return json.dumps(value, ensure_ascii=False)


def _column_index(path: Path, header: list[str], columns: Columns, line: int = 1) -> dict[str, int | None]:
    index = {}
    for key in _COLUMN_KEYS:
        name = getattr(columns, key)
        if name is None:
            index[key] = None
        elif name.strip() in header:
            index[key] = header.index(name.strip())
        else:
            raise DataError(
                f"{path}:{line}: no column '{name}' for {key} (columns found: {', '.join(header)}); "
                f"set data.columns.{key} in the config"
            )
    return index
