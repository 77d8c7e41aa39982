"""Reviewed label fixes: `data.labels.corrections` relabels or drops raw rows by file:line, and says so."""

import json

import pytest

from sft.config import DataConfig, LabelConfig
from sft.data.example import read_jsonl
from sft.data.prepare import format_summary, prepare
from sft.errors import DataError
from tests.conftest import write_csv


def project(tmp_path, corrections: list[dict] | None, columns=("source", "correct")):
    rows = [{"text": f"{stem} {i}", "label": label} for i in range(6)
            for stem, label in (("where is my card", "card"), ("what is my balance", "balance"))]
    rows[0]["label"] = "balance"  # "where is my card 0" (line 2), mislabelled
    raw = write_csv(tmp_path / "raw.csv", rows)
    labels = LabelConfig()
    if corrections is not None:
        fixes = write_csv(tmp_path / "fixes.csv", corrections, fieldnames=list(columns))
        labels = LabelConfig(corrections=str(fixes))
    return DataConfig(files=[str(raw)], validation_size=0.0, test_size=0.0, labels=labels), raw


def test_a_correction_relabels_or_drops_its_row_and_the_report_counts_what_changed(tmp_path):
    config, _ = project(tmp_path, [
        {"source": f"{tmp_path / 'raw.csv'}:2", "correct": "card"},  # the fix
        {"source": f"{tmp_path / 'raw.csv'}:3", "correct": "<drop>"},  # "what is my balance 0"
        {"source": f"{tmp_path / 'raw.csv'}:5", "correct": "balance"},  # already so
        {"source": f"{tmp_path / 'raw.csv'}:7", "correct": ""},  # not reviewed: skipped
    ])
    report = prepare(config, tmp_path / "out")
    train = {e.text: e.label for e in read_jsonl(tmp_path / "out" / "train.jsonl")}
    assert train["where is my card 0"] == "card"
    assert "what is my balance 0" not in train and len(train) == 11
    assert report["corrections"] == {"file": str(tmp_path / "fixes.csv"), "relabelled": 1, "dropped": 1,
                                     "unchanged": 1}
    assert report["dropped"] == {"corrected_to_drop": 1}
    assert report["by_split"]["pooled"]["labels_changed"] == 1
    assert "corrections from" in format_summary(report, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "report.json").read_text())["corrections"]["relabelled"] == 1


def test_audit_csv_with_its_correct_column_filled_is_a_corrections_file(tmp_path):
    columns = ("source", "text", "context", "given", "suggested", "score", "kind", "correct")
    row = {"source": f"{tmp_path / 'raw.csv'}:2", "text": "where is my card 0", "context": "", "given": "balance",
           "suggested": "card", "score": 0.01, "kind": "label issue", "correct": "card"}
    config, _ = project(tmp_path, [row], columns)
    assert prepare(config, tmp_path / "out")["corrections"]["relabelled"] == 1


@pytest.mark.parametrize("fixes, message", [
    ([{"source": "RAW:99", "correct": "card"}], r"1 correction\(s\) .* name rows that were not read .*RAW:99"),
    ([{"source": "RAW:2", "correct": "crad"}], "name a class no row carries: crad"),
    ([{"source": "RAW:2", "correct": "card"}, {"source": "RAW:2", "correct": "<drop>"}], "corrected twice"),
    ([{"source": "", "correct": "card"}], "'source' is empty"),
])
def test_a_correction_that_fixes_nothing_is_refused_and_nothing_is_written(tmp_path, fixes, message):
    fixes = [{**f, "source": f["source"].replace("RAW", str(tmp_path / "raw.csv"))} for f in fixes]
    config, _ = project(tmp_path, fixes)
    with pytest.raises(DataError, match=message.replace("RAW", ".*raw.csv")):
        prepare(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_corrections_file_without_its_columns_is_refused(tmp_path):
    config, _ = project(tmp_path, [{"source": "x:1", "label": "card"}], columns=("source", "label"))
    with pytest.raises(DataError, match="no 'correct' column"):
        prepare(config, tmp_path / "out")


def test_a_correction_carries_the_rows_duplicates_with_it_so_the_merge_keeps_the_fix(tmp_path):
    rows = [{"text": "where is my card", "label": "balance"}, {"text": "Where is my card", "label": "balance"},
            {"text": "what is my balance", "label": "balance"}, {"text": "my card is lost", "label": "card"}]
    raw = write_csv(tmp_path / "raw.csv", rows)
    fixes = write_csv(tmp_path / "fixes.csv", [{"source": f"{raw}:2", "correct": "card"}])
    config = DataConfig(files=[str(raw)], validation_size=0.0, test_size=0.0,
                        labels=LabelConfig(corrections=str(fixes)))
    report = prepare(config, tmp_path / "out")
    train = {e.text.casefold(): e.label for e in read_jsonl(tmp_path / "out" / "train.jsonl")}
    assert train["where is my card"] == "card" and report["label_conflicts"] == 0
    assert report["corrections"]["relabelled"] == 2
