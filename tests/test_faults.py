"""Fault injection: bad input and broken files fail with one line and their exit code, and leave
what was on disk as it was (checksums of every file before and after)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from sft.config import load_config
from sft.errors import MAX_MESSAGE, ConfigError, DataError, RunDirError
from tests.conftest import sft_cli, write_csv


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with the SHA-256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def fails(*args, code: int, input: str | bytes | None = None) -> str:
    """Run `sft ARGS`, check the exit code and that stderr is one line without a traceback; that line."""
    result = sft_cli(*args, code=code, input=input)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr) <= MAX_MESSAGE + len("error: \n")
    return result.stderr


@pytest.fixture
def fake_run(tmp_path) -> Path:
    """A run directory as far as the checks before any model work can tell: best weights, no last."""
    run = tmp_path / "run"
    (run / "model" / "best").mkdir(parents=True)
    for name, text in (("config.yaml", "{}"), ("labels.json", '["a", "b"]'), ("run.json", "{}"),
                       ("model/best/weights.index", "")):
        (run / name).write_text(text)
    return run


# -- configuration ---------------------------------------------------------------------------------

def alias_bomb(levels: int) -> str:
    """`levels` levels of nine aliases each under data.files: a few hundred bytes that name 9**levels strings."""
    items = ['&a0 ["lol"]'] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "data:\n  files:\n" + "".join(f"    - {item}\n" for item in items)


@pytest.mark.parametrize("levels, message", [
    (3, "data.files[0]: expected a string, found list ['lol']"),
    (9, "data.files[0]: expected a string, found list ['lol']"),  # 9**9 strings if quoted in full
    (13, "more than 100 aliases"),
])
def test_an_alias_bomb_under_a_typed_key_fails_in_one_short_line(tmp_path, levels, message):
    (tmp_path / "c.yaml").write_text(alias_bomb(levels))
    assert message in fails("prepare", "--config", tmp_path / "c.yaml", code=ConfigError.exit_code)
    assert not (tmp_path / "prepared").exists()


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(
    st.text(max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 lambda children: st.lists(children, max_size=4)
                 | st.dictionaries(st.sampled_from(["data", "model", "train", "runtime", "files", "epochs",
                                                   "precision", "labels", "x"]), children, max_size=4),
                 max_leaves=30).map(lambda v: yaml.safe_dump(v)),
))
def test_the_config_reader_returns_a_config_or_one_bounded_config_error(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as e:
        assert len(str(e)) <= MAX_MESSAGE * 4  # the CLI cuts it to one line of MAX_MESSAGE


def test_a_folder_given_as_config_is_a_config_error(tmp_path):
    assert "is a folder" in fails("prepare", "--config", tmp_path, code=ConfigError.exit_code)


def test_an_override_that_is_not_yaml_says_so(tmp_path):
    (tmp_path / "c.yaml").write_text("data: {prepared_dir: p}\n")
    message = fails("prepare", "--config", tmp_path / "c.yaml", "--set", "data.files=[a", code=3)
    assert "override 'data.files=[a': the value is not valid YAML" in message


# -- data ------------------------------------------------------------------------------------------

def test_a_field_longer_than_the_csv_modules_limit_is_read(tmp_path):
    long = "my order " + "very " * 40_000 + "late"  # 200,000 characters in one field
    rows = [{"text": long, "label": "late"}] + [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(9)]
    write_csv(tmp_path / "d.csv", rows)
    (tmp_path / "c.yaml").write_text(f"data: {{files: [{tmp_path / 'd.csv'}], validation_size: 0, test_size: 0}}\n")
    result = sft_cli("prepare", "--config", tmp_path / "c.yaml", "--out", tmp_path / "p", "--json")
    assert '"late": 1' in result.stdout


def test_data_with_one_class_is_refused_at_prepare(tmp_path):
    write_csv(tmp_path / "d.csv", [{"text": f"text {i}", "label": "only"} for i in range(10)])
    (tmp_path / "c.yaml").write_text(f"data: {{files: [{tmp_path / 'd.csv'}]}}\n")
    message = fails("prepare", "--config", tmp_path / "c.yaml", "--out", tmp_path / "p", code=DataError.exit_code)
    assert "holds 1 class (only)" in message and not (tmp_path / "p").exists()


@pytest.mark.parametrize("source", ["file", "stdin", "jsonl"])
def test_input_that_is_not_utf8_is_a_data_error_naming_the_line(fake_run, tmp_path, source):
    raw = b"where is my order\nca\xe7a va\n"
    if source == "jsonl":
        raw = b'{"text": "fine"}\n{"text": "ca\xe7a va"}\n'
    path = tmp_path / ("texts.jsonl" if source == "jsonl" else "texts.txt")
    path.write_bytes(raw)
    args = ["predict", "--run-dir", fake_run] + ([] if source == "stdin" else ["--input", path])
    message = fails(*args, code=DataError.exit_code, input=raw if source == "stdin" else None)
    name = "<stdin>" if source == "stdin" else str(path)
    assert f"{name}:2: not UTF-8 (byte 0xe7 at column" in message


def test_an_empty_text_is_refused(fake_run):
    result = sft_cli("predict", "--run-dir", fake_run, "--text", "  ", code=2)  # click's usage-error form
    assert "Error: --text is empty (after cleaning)" in result.stderr and not result.stdout


def test_the_last_model_of_an_unfinished_run_is_explained(fake_run):
    message = fails("predict", "--run-dir", fake_run, "--text", "hi", "--model", "last", code=RunDirError.exit_code)
    assert "no last model weights: they are written when training ends" in message


# -- what is written -------------------------------------------------------------------------------

def test_outputs_follow_the_users_umask(tmp_path):
    write_csv(tmp_path / "d.csv", [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(10)])
    (tmp_path / "c.yaml").write_text(f"data: {{files: [{tmp_path / 'd.csv'}]}}\n")
    previous = os.umask(0o022)
    try:
        sft_cli("prepare", "--config", tmp_path / "c.yaml", "--out", tmp_path / "p")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "p").stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "p").iterdir()} == {0o644}
