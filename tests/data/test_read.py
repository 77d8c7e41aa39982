import pytest

from sft.config import Columns
from sft.data.read import read_rows
from sft.errors import DataError


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
    with pytest.raises(DataError, match=r"no column 'text' for text \(columns found: utterance, intent\)"):
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


def test_undecodable_bytes_are_reported(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"text,label\ncaf\xe9,x\n")
    with pytest.raises(DataError, match="not UTF-8"):
        list(read_rows(path, Columns()))
