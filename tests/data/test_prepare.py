import dataclasses
import json
import subprocess
import sys

import pytest

from sft.config import Columns, DataConfig, LabelConfig, SplitFiles
from sft.data.clean import clean_text
from sft.data.example import read_jsonl
from sft.data.prepare import format_summary, prepare
from sft.errors import ConfigError, DataError
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


MESSY = [
    # dialogue_id, turn, speaker, text, label
    ("d1", "1", "agent", "How can I help?", ""),  # unlabelled: context only
    ("d1", "2", "user", "I lost my card", "lost_card"),
    ("d1", "3", "user", "Yeah.", "confirm"),
    ("d2", "1", "agent", "Anything else?", ""),
    ("d2", "2", "user", "Yeah.", "confirm"),  # the same reply after other words: no duplicate
    ("d3", "1", "user", "I lost my card", "lost_card"),  # opens a dialogue: a new example
    ("d4", "1", "user", "I lost my card", "lost_card"),  # exactly d3's: an exact duplicate
    ("d5", "1", "user", "i  LOST my card", "lost_card"),  # d3's after cleaning and case folding
    ("d6", "1", "user", "<br>", "lost_card"),  # empty once cleaned
    ("d7", "1", "user", "Hello", "greet"),
    ("d8", "1", "user", "hello", "bye"),  # Hello under two labels, one each: a tie
]


def messy_csv(tmp_path):
    path = tmp_path / "messy.csv"
    lines = ["dialogue_id,turn,speaker,text,label"] + [",".join(row) for row in MESSY] + ["d9,1,user,ragged,x,y"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_row_read_is_an_example_a_drop_or_a_duplicate(tmp_path):
    config = DataConfig(files=[str(messy_csv(tmp_path))], columns=DIALOGUE_COLUMNS, context_turns=1,
                        validation_size=0, test_size=0)
    report = prepare(config, tmp_path / "out")
    assert report["rows_read"] == 12
    assert report["dropped"] == {"empty_label": 2, "empty_text": 1, "label_conflict": 2, "ragged_row": 1}
    assert report["duplicates"] == {"exact": 1, "normalised": 1}
    assert report["label_conflicts"] == 1
    assert report["conflict_sample"] == [{"text": "Hello", "context": [], "labels": {"greet": 1, "bye": 1}, "kept": None}]
    assert report["rows_read"] == (sum(report["examples"].values()) + sum(report["dropped"].values())
                                   + report["duplicates_removed"])
    train = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert sorted((e.text, tuple(e.context)) for e in train) == [
        ("I lost my card", ()), ("I lost my card", ("How can I help?",)),
        ("Yeah.", ("Anything else?",)), ("Yeah.", ("I lost my card",))]
    assert report["problems"]["ragged_row"] == [f"{tmp_path / 'messy.csv'}:13: row has 6 fields, the header has 5; "
                                                "check quoting of commas and newlines"]


def test_strict_turns_the_first_bad_row_into_an_error(tmp_path):
    config = DataConfig(files=[str(messy_csv(tmp_path))], columns=DIALOGUE_COLUMNS)
    with pytest.raises(DataError, match=r"messy.csv:13: row has 6 fields, the header has 5; .*an error under --strict"):
        prepare(config, tmp_path / "out", strict=True)
    assert not (tmp_path / "out").exists()


def test_conflicts_can_be_dropped_instead_of_voted(tmp_path):
    rows = [{"text": "hi", "label": "greet"}] * 2 + [{"text": "hi", "label": "bye"}, {"text": "bye", "label": "bye"},
                                                     {"text": "hello", "label": "greet"}]
    path = write_csv(tmp_path / "a.csv", rows)
    vote = prepare(DataConfig(files=[str(path)], validation_size=0, test_size=0), tmp_path / "vote")
    assert vote["examples"]["train"] == 3 and vote["dropped"] == {}
    config = DataConfig(files=[str(path)], labels=LabelConfig(conflicts="drop"), validation_size=0, test_size=0)
    drop = prepare(config, tmp_path / "drop")
    assert drop["examples"]["train"] == 2 and drop["dropped"] == {"label_conflict": 3}


def test_labels_mapped_then_rare_classes_dropped_or_merged(tmp_path):
    rows = ([{"text": f"happy {i}", "label": "Happy"} for i in range(3)] + [{"text": "glad", "label": "glad "}]
            + [{"text": f"sad {i}", "label": "sad"} for i in range(4)] + [{"text": "meh", "label": "bored"}])
    path = write_csv(tmp_path / "a.csv", rows)
    labels = LabelConfig(casefold=True, mapping={"glad": "happy"}, min_count=2)
    report = prepare(DataConfig(files=[str(path)], labels=labels, validation_size=0, test_size=0), tmp_path / "drop")
    assert report["class_counts"]["train"] == {"happy": 4, "sad": 4}
    assert report["rare_labels"] == {"bored": 1} and report["dropped"] == {"rare_label": 1}
    merged = dataclasses.replace(labels, rare="other")
    report = prepare(DataConfig(files=[str(path)], labels=merged, validation_size=0, test_size=0), tmp_path / "other")
    assert report["class_counts"]["train"] == {"happy": 4, "other": 1, "sad": 4}
    assert json.loads((tmp_path / "other" / "labels.json").read_text()) == ["happy", "other", "sad"]


def test_given_splits_keep_their_own_dialogues_and_the_leak_check_sees_short_replies(tmp_path):
    # As MELD: each file numbers its dialogues from 0, and "Yeah." recurs across them.
    train = write_csv(tmp_path / "train.csv", [
        {"dialogue_id": "0", "turn": 0, "speaker": "A", "text": "Want coffee?", "label": "question"},
        {"dialogue_id": "0", "turn": 1, "speaker": "B", "text": "Yeah.", "label": "yes"}])
    test = write_csv(tmp_path / "test.csv", [
        {"dialogue_id": "0", "turn": 0, "speaker": "C", "text": "Ready?", "label": "question"},
        {"dialogue_id": "0", "turn": 1, "speaker": "D", "text": "Yeah.", "label": "yes"}])
    config = DataConfig(splits=SplitFiles(train=[str(train)], test=[str(test)]), columns=DIALOGUE_COLUMNS,
                        context_turns=2, context_speaker=True, validation_size=0)
    report = prepare(config, tmp_path / "out")
    test_examples = read_jsonl(tmp_path / "out" / "test.jsonl")
    assert [e.context for e in test_examples] == [[], ["C: Ready?"]]  # nothing from train's dialogue 0
    assert report["leakage"] == {"texts_in_several_splits": 1, "examples_in_several_splits": 0, "sample": ["yeah."]}


def test_csv_tsv_and_json_lines_pool_together(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\nhi there,greet\n")
    (tmp_path / "b.tsv").write_text("text\tlabel\nbye now\tbye\n")
    (tmp_path / "c.jsonl").write_text('{"text": "thanks", "label": "thank"}\n')
    files = [str(tmp_path / name) for name in ("a.csv", "b.tsv", "c.jsonl")]
    report = prepare(DataConfig(files=files, validation_size=0, test_size=0), tmp_path / "out")
    assert [f["rows"] for f in report["files"]] == [1, 1, 1]
    assert report["class_counts"]["train"] == {"bye": 1, "greet": 1, "thank": 1}


def test_lengths_in_word_pieces_with_a_vocabulary_else_in_words(tmp_path, dialogue_csv):
    config = DataConfig(files=[str(dialogue_csv)], columns=DIALOGUE_COLUMNS)
    assert prepare(config, tmp_path / "words")["lengths"]["unit"] == "whitespace_tokens"
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhi\n")
    lengths = prepare(config, tmp_path / "pieces", vocab=vocab)["lengths"]
    assert lengths["unit"] == "word_pieces" and lengths["vocab"] == str(vocab)


def test_bad_files_are_one_line_data_errors(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "nolabel.csv").write_text("text,label\nhi,\nbye,\n")
    for name, message in [("empty.csv", "empty.csv:1: the file is empty"),
                          ("nolabel.csv", "nolabel.csv:2: column 'label' is empty on all 2 rows")]:
        with pytest.raises(DataError, match=message) as error:
            prepare(DataConfig(files=[str(tmp_path / name)]), tmp_path / "out")
        assert "\n" not in str(error.value)


def test_the_summary_names_drops_duplicates_classes_lengths_and_leakage(tmp_path):
    config = DataConfig(files=[str(messy_csv(tmp_path))], columns=DIALOGUE_COLUMNS, context_turns=1,
                        validation_size=0, test_size=0)
    summary = format_summary(prepare(config, tmp_path / "out"), tmp_path / "out")
    assert summary.splitlines()[:3] == [
        f"prepared {tmp_path / 'out'}: 12 rows read from 1 file(s), 2 labels; train/validation/test = 4/0/0",
        "  dropped: empty_label 2, empty_text 1, label_conflict 2, ragged_row 1",
        "  duplicates removed: 2 (1 exact, 1 normalised); label conflicts: 1 (majority)",
    ]
    assert "  confirm             2           0           0" in summary
    assert f"  first ragged_row: {tmp_path / 'messy.csv'}:13: row has 6 fields" in summary
    assert "length in whitespace tokens: text p50" in summary
    assert "leakage: 0 texts in several splits" in summary


def test_prepare_imports_no_tensorflow(dialogue_csv, tmp_path):
    code = (
        "import sys\nfrom sft.config import Columns, DataConfig\nfrom sft.data.prepare import prepare\n"
        f"prepare(DataConfig(files=[{str(dialogue_csv)!r}]), {str(tmp_path / 'out')!r})\n"
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_speaker_prefixes_need_a_speaker_column(tmp_path, dialogue_csv):
    config = DataConfig(files=[str(dialogue_csv)], columns=Columns(dialogue_id="dialogue_id"), context_speaker=True)
    with pytest.raises(ConfigError, match="data.context_speaker needs data.columns.speaker"):
        prepare(config, tmp_path / "out")


def given(tmp_path, train_rows, test_rows, validation_rows=None, **config):
    files = {"train": [str(write_csv(tmp_path / "train.csv", train_rows))],
             "test": [str(write_csv(tmp_path / "test.csv", test_rows))]}
    if validation_rows:
        files["validation"] = [str(write_csv(tmp_path / "validation.csv", validation_rows))]
    return DataConfig(splits=SplitFiles(**files), validation_size=0.25, **config)


FILLER = [{"text": f"{label} example {i}", "label": label} for label in ("lost_card", "balance") for i in range(8)]


def test_a_given_test_split_keeps_every_row_and_label_and_train_loses_its_copies(tmp_path):
    train = FILLER + [{"text": "I lost my card", "label": "lost_card"}, {"text": "i LOST my  card", "label": "lost_card"}]
    test = [{"text": "I lost my card", "label": "balance"},  # the authors' label, unlike train's
            {"text": "what is my balance", "label": "balance"},
            {"text": "what is my balance", "label": "balance"},  # an exact duplicate within test
            {"text": "card gone", "label": "lost_card"}, {"text": "card gone", "label": "balance"}]  # a conflict
    report = prepare(given(tmp_path, train, test), tmp_path / "out")
    kept = [(e.text, e.label) for e in read_jsonl(tmp_path / "out" / "test.jsonl")]
    assert sorted(kept) == sorted((row["text"], row["label"]) for row in test)  # every row, every gold label
    training = read_jsonl(tmp_path / "out" / "train.jsonl") + read_jsonl(tmp_path / "out" / "validation.jsonl")
    assert not [e for e in training if "lost my" in e.text.lower()]  # the leak: both train copies gone
    assert report["by_split"]["test"] == {"rows_read": 5, "dropped": {}, "duplicates_removed": 0,
                                          "duplicates_kept": 2, "label_conflicts": 0, "labels_changed": 0,
                                          "examples": 5}
    assert report["by_split"]["train"]["dropped"] == {"copy_of_test": 2}
    assert report["by_split"]["train"]["rows_read"] == len(train)
    summary = format_summary(report, tmp_path / "out")
    assert "  test: 5 rows read -> 5 examples; none dropped; duplicates removed 0, kept 2" in summary
    assert "  train: 18 rows read ->" in summary and "copy_of_test 2" in summary


def test_a_given_test_split_may_lose_its_exact_duplicates_and_nothing_else(tmp_path):
    test = [{"text": "what is my balance", "label": "balance"}, {"text": "what is my balance", "label": "balance"},
            {"text": "card gone", "label": "lost_card"}, {"text": "card gone", "label": "balance"}]
    report = prepare(given(tmp_path, FILLER, test, dedup_given_test=True), tmp_path / "out")
    kept = sorted((e.text, e.label) for e in read_jsonl(tmp_path / "out" / "test.jsonl"))
    assert kept == [("card gone", "balance"), ("card gone", "lost_card"), ("what is my balance", "balance")]
    assert report["by_split"]["test"]["duplicates_removed"] == 1


def test_validation_outranks_train_and_test_outranks_validation(tmp_path):
    train = FILLER + [{"text": "in validation too", "label": "balance"}, {"text": "in test too", "label": "balance"}]
    validation = [{"text": "In validation too", "label": "lost_card"}, {"text": "in test too", "label": "lost_card"},
                  {"text": "validation only", "label": "balance"}]
    test = [{"text": "in test too", "label": "balance"}, {"text": "test only", "label": "lost_card"}]
    report = prepare(given(tmp_path, train, test, validation), tmp_path / "out")
    texts = {s: [(e.text, e.label) for e in read_jsonl(tmp_path / "out" / f"{s}.jsonl")]
             for s in ("train", "validation", "test")}
    assert texts["validation"] == [("In validation too", "lost_card"), ("validation only", "balance")]
    assert texts["test"] == [("in test too", "balance"), ("test only", "lost_card")]
    assert not {t for t, _ in texts["train"]} & {"in validation too", "in test too"}
    assert report["by_split"]["train"]["dropped"] == {"copy_of_test": 1, "copy_of_validation": 1}
    assert report["by_split"]["validation"]["dropped"] == {"copy_of_test": 1}


def test_conflicts_within_train_are_still_resolved_by_majority(tmp_path):
    train = FILLER + [{"text": "hmm", "label": "balance"}, {"text": "hmm", "label": "balance"},
                      {"text": "Hmm", "label": "lost_card"}]
    report = prepare(given(tmp_path, train, [{"text": "test only", "label": "balance"}]), tmp_path / "out")
    training = read_jsonl(tmp_path / "out" / "train.jsonl") + read_jsonl(tmp_path / "out" / "validation.jsonl")
    assert [(e.text, e.label) for e in training if e.text.lower() == "hmm"] == [("hmm", "balance")]
    assert report["by_split"]["train"]["label_conflicts"] == 1
    assert report["by_split"]["train"]["duplicates_removed"] == 2


@pytest.mark.parametrize("counts, advised", [({"neutral": 60, "joy": 39, "fear": 1}, True),
                                             ({"neutral": 50, "joy": 45, "fear": 5}, False)])
def test_an_imbalanced_train_split_is_named_with_the_settings_that_address_it(tmp_path, counts, advised):
    rows = [{"text": f"{label} {i}", "label": label} for label, n in counts.items() for i in range(n)]
    config = DataConfig(splits=SplitFiles(train=[str(write_csv(tmp_path / "t.csv", rows))]), validation_size=0,
                        test_size=0)
    report = prepare(config, tmp_path / "out")
    assert report["imbalance"]["largest"] == {"label": "neutral", "share": counts["neutral"] / 100}
    assert ("advice" in report["imbalance"]) == advised
    summary = format_summary(report, tmp_path / "out")
    assert ("train.class_weights: balanced" in summary) == advised
    if advised:
        assert "(neutral holds 60%)" in summary  # fear holds 1%, not under it
        assert "metrics.exclude_labels: [neutral]" in summary


def test_a_class_only_the_given_test_split_holds_is_no_class_of_the_model(tmp_path):
    test = [{"text": "what is my balance", "label": "balance"}, {"text": "hello", "label": "greeting"}]
    report = prepare(given(tmp_path, FILLER, test), tmp_path / "out")
    assert json.loads((tmp_path / "out" / "labels.json").read_text()) == ["balance", "lost_card"]
    assert [e.label for e in read_jsonl(tmp_path / "out" / "test.jsonl")] == ["balance", "greeting"]  # kept as given
    assert report["by_split"]["validation"] == {"carved_from_train": 4}
