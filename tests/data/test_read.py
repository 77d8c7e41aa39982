import csv
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sft.config import Columns
from sft.data.read import RowProblems, read_rows
from sft.errors import ConfigError, DataError


def test_quoted_newlines_stay_in_one_row_and_lines_point_at_its_start(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('text,label\n"two\nlines",x\nthird,y\n', encoding="utf-8")
    rows = list(read_rows(path, Columns()))
    assert [(r.text, r.label) for r in rows] == [("two\nlines", "x"), ("third", "y")]
    assert [r.source for r in rows] == [f"{path}:2", f"{path}:4"]


def test_header_names_match_after_trimming_and_bom_is_ignored(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("\ufeff Utterance , Emotion\nhi,joy\n", encoding="utf-8")
    rows = list(read_rows(path, Columns(text="Utterance", label="Emotion")))
    assert rows[0].text == "hi" and rows[0].label == "joy"


def test_missing_column_lists_the_columns_found(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("utterance,intent\nhi,greet\n")
    with pytest.raises(DataError, match=r"a.csv:1: no column 'text' for text \(columns found: utterance, intent\)"):
        list(read_rows(path, Columns()))


def test_ragged_row_names_file_and_line(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("text,label\nhi,greet\nextra,field,here\n")
    with pytest.raises(DataError, match=r"a.csv:3: row has 3 fields, the header has 2"):
        list(read_rows(path, Columns()))


def test_empty_file_and_missing_file(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="the file is empty"):
        list(read_rows(tmp_path / "empty.csv", Columns()))
    with pytest.raises(DataError, match="not found"):
        list(read_rows(tmp_path / "none.csv", Columns()))


def test_undecodable_bytes_name_file_line_and_column(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"text,label\ncaf\xe9,x\n")
    with pytest.raises(DataError, match=r"a.csv:2:4: found bytes e9, expected utf-8 text; set data.encoding"):
        list(read_rows(path, Columns()))


def test_crlf_line_endings_and_curly_quotes_as_meld_writes_them(tmp_path):
    path = tmp_path / "meld.csv"
    path.write_bytes("Sr No.,Utterance,Emotion\r\n1,\"You must’ve had\r\nyour hands full.\",neutral\r\n2,Hi,joy\r\n"
                     .encode("utf-8"))
    rows = list(read_rows(path, Columns(text="Utterance", label="Emotion")))
    assert [r.text for r in rows] == ["You must’ve had\r\nyour hands full.", "Hi"]
    assert [r.source for r in rows] == [f"{path}:2", f"{path}:4"]


def test_tsv_and_json_lines_are_read_by_their_file_names(tmp_path):
    (tmp_path / "a.tsv").write_text("text\tlabel\nhi, there\tgreet\n")
    (tmp_path / "a.jsonl").write_text('{"text": "hi, there", "label": "greet", "turn": 3}\n\n{"text": "bye", "label": "bye"}\n')
    assert [(r.text, r.label) for r in read_rows(tmp_path / "a.tsv", Columns())] == [("hi, there", "greet")]
    rows = list(read_rows(tmp_path / "a.jsonl", Columns(turn="turn")))
    assert [(r.text, r.label, r.turn, r.source.rsplit(":", 1)[1]) for r in rows] == [
        ("hi, there", "greet", "3", "1"), ("bye", "bye", None, "3")]


def test_a_file_name_that_says_no_format_needs_data_format(tmp_path):
    (tmp_path / "a.txt").write_text("text,label\nhi,x\n")
    with pytest.raises(ConfigError, match="cannot tell the format of .*a.txt.*set data.format"):
        list(read_rows(tmp_path / "a.txt", Columns()))
    assert [r.text for r in read_rows(tmp_path / "a.txt", Columns(), format="csv")] == ["hi"]


def test_other_encodings_by_config(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("text,label\nIt’s café,x\n".encode("cp1252"))
    assert [r.text for r in read_rows(path, Columns(), encoding="cp1252")] == ["It’s café"]
    path.write_text("text,label\nthé,x\n", encoding="utf-16")
    assert [r.text for r in read_rows(path, Columns(), encoding="utf-16")] == ["thé"]
    with pytest.raises(ConfigError, match="data.encoding: 'klingon' is not a known encoding"):
        list(read_rows(path, Columns(), encoding="klingon"))


def test_row_problems_are_counted_not_fatal_unless_strict(tmp_path):
    path = tmp_path / "a.csv"
    good = "".join(f"text {i},x\n" for i in range(200))
    path.write_bytes(b"text,label\n" + good.encode() + b"caf\xe9,x\nragged,x,y\nspreadsheet,x,,\n")
    problems = RowProblems(strict=False)
    rows = list(read_rows(path, Columns(), problems=problems))
    assert len(rows) == 201  # trailing empty cells are no ragged row
    assert problems.counts == {"undecodable": 1, "ragged_row": 1}
    assert problems.messages["ragged_row"] == [f"{path}:203: row has 3 fields, the header has 2; "
                                               "check quoting of commas and newlines"]
    with pytest.raises(DataError, match=r"a.csv:202:4: found bytes e9.*an error under --strict"):
        list(read_rows(path, Columns(), problems=RowProblems(strict=True)))


def test_a_file_in_the_wrong_encoding_is_an_error_even_when_not_strict(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("text,label\n".encode() + "".join(f"café {i},x\n" for i in range(20)).encode("latin-1"))
    with pytest.raises(DataError, match=r"a.csv:2:4: .*\(20 of 20 rows undecodable: the file is not utf-8\)"):
        list(read_rows(path, Columns(), problems=RowProblems(strict=False)))


def test_a_label_column_empty_everywhere_is_an_error(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("text,label,intent\nhi,,greet\nbye, ,bye\n")
    with pytest.raises(DataError, match=r"a.csv:2: column 'label' is empty on all 2 rows; .*data.columns.label"):
        list(read_rows(path, Columns(), problems=RowProblems(strict=False)))


def test_json_lines_problems_and_missing_keys(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "hi", "label": "x"}\nnot json\n[1, 2]\n{"label": "y"}\n')
    problems = RowProblems(strict=False)
    rows = list(read_rows(path, Columns(), problems=problems))
    assert [(r.text, r.label) for r in rows] == [("hi", "x"), ("", "y")]  # a missing text is an empty one
    assert problems.counts == {"malformed_json": 2}
    assert problems.messages["malformed_json"][0].startswith(f"{path}:2:1: not JSON (Expecting value)")
    (tmp_path / "b.jsonl").write_text('{"utterance": "hi", "label": "x"}\n')
    with pytest.raises(DataError, match=r"b.jsonl:1: no column 'text' for text \(columns found: utterance, label\)"):
        list(read_rows(tmp_path / "b.jsonl", Columns()))


def test_a_lone_surrogate_in_json_becomes_a_replacement_character(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "a\\ud800b \\ud83d\\ude00", "label": "x"}\n')
    assert [r.text for r in read_rows(tmp_path / "a.jsonl", Columns())] == ["a\ufffdb \U0001F600"]


cells = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(cells, cells), min_size=1, max_size=8), st.sampled_from(["csv", "tsv", "jsonl"]))
def test_whatever_the_cells_hold_rows_come_back_as_written(tmp_path_factory, rows, kind):
    path = tmp_path_factory.mktemp("rows") / f"a.{kind}"
    with path.open("w", encoding="utf-8", newline="") as f:
        if kind == "jsonl":
            f.writelines(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows)
        else:
            writer = csv.writer(f, delimiter="\t" if kind == "tsv" else ",")
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    problems = RowProblems(strict=False)
    try:
        read = [(r.text, r.label) for r in read_rows(path, Columns(), problems=problems)]
    except DataError as e:  # a file whose labels are all blank, or with no row at all
        assert "is empty" in str(e)
        return
    blank = kind != "jsonl"  # CSV rows of blank cells are skipped as empty lines
    assert read == [(t, lab) for t, lab in rows if not (blank and not t.strip() and not lab.strip())]
    assert not problems.counts


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["csv", "tsv", "jsonl"]))
def test_arbitrary_bytes_give_rows_or_a_data_error_never_a_crash(tmp_path_factory, data, kind):
    path = tmp_path_factory.mktemp("bytes") / f"a.{kind}"
    path.write_bytes(b"text,label\n".replace(b",", b"\t" if kind == "tsv" else b",") + data if kind != "jsonl" else data)
    try:
        for row in read_rows(path, Columns(), problems=RowProblems(strict=False)):
            assert isinstance(row.text, str) and isinstance(row.label, str)
    except DataError as e:
        assert "\n" not in str(e)
