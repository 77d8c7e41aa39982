"""The prepared-data folder's layout, read and written in one place.

    PREPARED/
      train.jsonl, validation.jsonl, test.jsonl   one example a line (sft/data/example.py)
      labels.json                                 class names, sorted; a class id is its index
      report.json                                 what `sft prepare` read, dropped and kept
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sft.data.example import SPLITS, Example, read_jsonl
from sft.errors import DataError
from sft.files import write_json, write_text


@dataclass(frozen=True)
class PreparedDir:
    path: Path

    @classmethod
    def open(cls, path: str | Path, config_path: str | Path | None = None) -> PreparedDir:
        """A folder `sft prepare` wrote; else a data error naming the command that writes it."""
        prepared = cls(Path(path))
        if not prepared.labels_file.is_file():
            command = f"sft prepare --config {config_path}" if config_path else "sft prepare"
            raise DataError(f"'{prepared.path}' is not a prepared-data folder (no labels.json): run `{command}` first")
        return prepared

    @property
    def labels_file(self) -> Path:
        return self.path / "labels.json"

    @property
    def report_file(self) -> Path:
        return self.path / "report.json"

    def split_file(self, split: str) -> Path:
        return self.path / f"{split}.jsonl"

    def labels(self) -> list[str]:
        labels = json.loads(self.labels_file.read_text(encoding="utf-8"))
        if len(labels) < 2:
            raise DataError(f"'{self.labels_file}' lists {len(labels)} class(es); a classifier needs at least 2")
        return labels

    def examples(self, split: str) -> list[Example]:
        return read_jsonl(self.split_file(split))

    def write(self, splits: dict[str, list[Example]], labels: list[str], report: dict) -> None:
        """Fill the folder (a fresh one: `sft prepare` builds it under a temporary name)."""
        for split in SPLITS:
            write_text(self.split_file(split), "".join(e.to_json() + "\n" for e in splits[split]))
        write_json(self.labels_file, labels)
        write_json(self.report_file, report)
