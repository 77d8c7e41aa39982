"""The unit of prepared data, and the JSON Lines files that hold it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sft.errors import DataError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    dialogue_id: str | None = None
    # Previous turns of the dialogue, oldest first.
    context: list[str] = field(default_factory=list)
    source: str | None = None  # "file:line" of the raw row

    def to_json(self) -> str:
        # Field by field: dataclasses.asdict deep-copies, and was half of `sft prepare`'s time.
        row = {"text": self.text, "label": self.label, "dialogue_id": self.dialogue_id, "context": self.context,
               "source": self.source}
        return json.dumps(row, ensure_ascii=False)


def read_jsonl(path: str | Path) -> list[Example]:
    """Examples from a prepared `.jsonl` file; `label` may be absent for unlabelled text."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file '{path}' not found: run `sft prepare` first or pass an existing file")
    examples = []
    with path.open("rb") as f:
        for line_number, raw in enumerate(f, 1):
            line = decode_line(raw, path, line_number)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                examples.append(
                    Example(
                        text=str(row["text"]),
                        label=str(row.get("label", "")),
                        dialogue_id=row.get("dialogue_id"),
                        context=list(row.get("context") or []),
                        source=row.get("source"),
                    )
                )
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{path}:{line_number}: not a prepared example ({e}); expected JSON with 'text'") from None
    return examples


def decode_line(raw: bytes, path: str | Path, line_number: int) -> str:
    """One line of a UTF-8 file, or a `DataError` that says where it is not UTF-8."""
    try:
        return raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:{line_number}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                        "save the file as UTF-8") from None
