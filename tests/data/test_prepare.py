import json

import pytest

from sft.config import Columns, DataConfig, SplitFiles
from sft.data.clean import clean_text
from sft.data.example import read_jsonl
from sft.data.prepare import prepare
from sft.errors import DataError
from tests.conftest import write_csv

DIALOGUE_COLUMNS = Columns(dialogue_id="dialogue_id", turn="turn", speaker="speaker")


def test_clean_text_normalises_and_is_idempotent():
    raw = "  Ｈｉ\u200b there\u0007,\n\tfriend  "
    assert clean_text(raw) == "Hi there, friend"
    assert clean_text(clean_text(raw)) == clean_text(raw)


def test_prepare_writes_splits_labels_and_report(tmp_path, dialogue_csv):
    config = DataConfig(files=[str(dialogue_csv)], columns=DIALOGUE_COLUMNS, validation_size=0.25, test_size=0.25)
    report = prepare(config, tmp_path / "out")
    out = tmp_path / "out"
    assert json.loads((out / "labels.json").read_text()) == ["balance", "greeting", "lost_card"]
    assert json.loads((out / "report.json").read_text()) == report
    splits = {s: read_jsonl(out / f"{s}.jsonl") for s in ("train", "validation", "test")}
    assert sum(map(len, splits.values())) == report["rows_read"] - report["duplicates_removed"]
    assert report["leakage"]["texts_in_several_splits"] == 0
    # whole dialogues go to one split
    owners = {}
    for name, examples in splits.items():
        for e in examples:
            assert owners.setdefault(e.dialogue_id, name) == name
    assert all(len(examples) > 0 for examples in splits.values())


def test_context_carries_previous_turns_in_order(tmp_path):
    rows = [
        {"dialogue_id": "d1", "turn": 3, "speaker": "u", "text": "third", "label": "x"},
        {"dialogue_id": "d1", "turn": 1, "speaker": "u", "text": "first", "label": "y"},
        {"dialogue_id": "d1", "turn": 2, "speaker": "u", "text": "second", "label": "x"},
    ]
    path = write_csv(tmp_path / "d.csv", rows)
    config = DataConfig(files=[str(path)], columns=DIALOGUE_COLUMNS, context_turns=1, validation_size=0, test_size=0)
    prepare(config, tmp_path / "out")
    examples = {e.text: e for e in read_jsonl(tmp_path / "out" / "train.jsonl")}
    assert examples["first"].context == []
    assert examples["second"].context == ["first"]
    assert examples["third"].context == ["second"]  # only one turn of context asked for


def test_duplicates_removed_and_conflicts_resolved_by_majority(tmp_path):
    rows = [{"text": t, "label": lab} for t, lab in
            [("Hello", "greet"), ("hello ", "greet"), ("HELLO", "bye"), ("bye", "bye"), ("card lost", "card")]]
    path = write_csv(tmp_path / "a.csv", rows)
    report = prepare(DataConfig(files=[str(path)], validation_size=0, test_size=0), tmp_path / "out")
    assert report["duplicates_removed"] == 2
    assert report["label_conflicts"] == 1
    kept = {e.text: e.label for e in read_jsonl(tmp_path / "out" / "train.jsonl")}
    assert kept == {"Hello": "greet", "bye": "bye", "card lost": "card"}


def test_single_utterances_are_stratified(tmp_path):
    rows = [{"text": f"{label} example {i}", "label": label} for label in ("a", "b") for i in range(50)]
    path = write_csv(tmp_path / "a.csv", rows)
    report = prepare(DataConfig(files=[str(path)], validation_size=0.2, test_size=0.2), tmp_path / "out")
    assert report["class_counts"] == {
        "train": {"a": 30, "b": 30}, "validation": {"a": 10, "b": 10}, "test": {"a": 10, "b": 10}
    }


def test_existing_output_is_kept_unless_overwrite(tmp_path, dialogue_csv):
    config = DataConfig(files=[str(dialogue_csv)], columns=DIALOGUE_COLUMNS)
    prepare(config, tmp_path / "out")
    before = (tmp_path / "out" / "train.jsonl").read_text()
    with pytest.raises(DataError, match="already exists: pass --overwrite"):
        prepare(config, tmp_path / "out")
    assert (tmp_path / "out" / "train.jsonl").read_text() == before
    prepare(config, tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dialogues.csv", "out"]  # no temporary left over


def test_a_failed_prepare_leaves_nothing_behind(tmp_path):
    path = write_csv(tmp_path / "a.csv", [{"text": "", "label": "x"}])
    with pytest.raises(DataError, match="every row was dropped"):
        prepare(DataConfig(files=[str(path)]), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_given_splits_are_kept_and_validation_is_carved_from_train(tmp_path):
    train = write_csv(tmp_path / "train.csv", [{"text": f"{lab} text {i}", "label": lab}
                                               for lab in ("a", "b") for i in range(20)]
                      + [{"text": "shared text", "label": "a"}])
    test = write_csv(tmp_path / "test.csv", [{"text": "Shared  text", "label": "a"}, {"text": "only test", "label": "b"}])
    config = DataConfig(splits=SplitFiles(train=[str(train)], test=[str(test)]), validation_size=0.25)
    report = prepare(config, tmp_path / "out")
    assert report["examples"] == {"train": 30, "validation": 10, "test": 2}
    assert report["class_counts"]["validation"] == {"a": 5, "b": 5}
    # the text found in both train and test stays in test only
    test_texts = [e.text for e in read_jsonl(tmp_path / "out" / "test.jsonl")]
    assert test_texts == ["Shared text", "only test"]
    assert report["leakage"]["texts_in_several_splits"] == 0


def test_files_and_splits_together_are_refused(tmp_path, dialogue_csv):
    config = DataConfig(files=[str(dialogue_csv)], splits=SplitFiles(train=[str(dialogue_csv)]))
    with pytest.raises(DataError, match="either data.files"):
        prepare(config, tmp_path / "out")
