"""The command line's contract: fast help, one-line errors with documented exit codes."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sft.cli import main
from sft.errors import ConfigError, DataError, HubError, RunDirError

COMMANDS = [[], ["prepare"], ["train"], ["evaluate"], ["predict"], ["hub"], ["hub", "export"], ["hub", "fetch"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "sft")
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [*command, "--help"], prog_name="sft")
    assert result.exit_code == 0
    assert "Usage: sft" in result.output


def test_help_and_version_do_not_import_tensorflow():
    code = (
        "import sys; from click.testing import CliRunner; from sft.cli import main\n"
        "for args in (['--help'], ['--version'], ['train', '--help']):\n"
        "    assert CliRunner().invoke(main, args).exit_code == 0\n"
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_errors_that_need_no_model_come_before_tensorflow(tmp_path):
    """Bad input that needs no model fails at once: TensorFlow is never imported."""
    other_tool = tmp_path / "hf-output"  # a folder another trainer wrote
    other_tool.mkdir()
    (other_tool / "config.json").write_text("{}")
    run = tmp_path / "run"
    run.mkdir()
    for name, text in (("config.yaml", "{}"), ("labels.json", '["a", "b"]'), ("run.json", "{}")):
        (run / name).write_text(text)
    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / "saved_model.pb").write_text("")
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "labels.json").write_text('["a", "b"]')
    (tmp_path / "c.yaml").write_text(f"data: {{prepared_dir: {tmp_path / 'prepared'}}}\ntrain: {{run_dir: {run}}}\n")
    cases = [
        (["evaluate", "--run-dir", str(tmp_path / "does-not-exist")], RunDirError.exit_code),
        (["evaluate", "--run-dir", str(other_tool)], RunDirError.exit_code),
        (["predict", "--run-dir", str(run)], 2),  # no text given, empty standard input
        (["export", "--run-dir", str(run), "--out", str(tmp_path / "exported")], RunDirError.exit_code),
        (["train", "--config", str(tmp_path / "c.yaml")], RunDirError.exit_code),  # the run exists already
    ]
    code = (
        "import json, sys; from click.testing import CliRunner; from sft.cli import main\n"
        f"codes = [CliRunner().invoke(main, args, input='').exit_code for args in {[c[0] for c in cases]!r}]\n"
        "print(json.dumps([codes, 'tensorflow' in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == [[c[1] for c in cases], False]


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_missing_config_file_is_a_config_error(tmp_path):
    result = invoke("prepare", "--config", str(tmp_path / "none.yaml"))
    assert result.exit_code == ConfigError.exit_code == 3
    assert result.stderr.startswith("error: config file") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_unknown_key_is_a_config_error(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  epoch: 2\n")
    result = invoke("prepare", "--config", str(tmp_path / "c.yaml"))
    assert result.exit_code == 3
    assert "unknown config key 'train.epoch'" in result.stderr


def test_missing_data_file_is_a_data_error(tmp_path):
    (tmp_path / "c.yaml").write_text(f"data:\n  files: [{tmp_path / 'none.csv'}]\n")
    result = invoke("prepare", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "p"))
    assert result.exit_code == DataError.exit_code == 4
    assert "none.csv' not found" in result.stderr
    assert not (tmp_path / "p").exists()


def test_prepare_counts_bad_rows_and_strict_refuses_them(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\nhi,greet\nbye,bye\nragged,x,y\n")
    (tmp_path / "c.yaml").write_text(f"data:\n  files: [{tmp_path / 'a.csv'}]\n  validation_size: 0\n  test_size: 0\n")
    result = invoke("prepare", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "p"))
    assert result.exit_code == 0
    assert "3 rows read from 1 file(s)" in result.stdout  # the result on stdout; stderr is for logs
    assert "  dropped: ragged_row 1" in result.stdout
    as_json = invoke("prepare", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r"), "--json")
    assert json.loads(as_json.stdout)["dropped"] == {"ragged_row": 1}
    result = invoke("prepare", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "q"), "--strict")
    assert result.exit_code == DataError.exit_code
    assert result.stderr.count("\n") == 1 and "a.csv:4: row has 3 fields, the header has 2" in result.stderr
    assert not (tmp_path / "q").exists()


def test_train_before_prepare_says_what_to_run(tmp_path):
    (tmp_path / "c.yaml").write_text(f"data:\n  prepared_dir: {tmp_path / 'p'}\n")
    for dry_run in ([], ["--dry-run"]):
        result = invoke("train", "--config", str(tmp_path / "c.yaml"), *dry_run)
        assert result.exit_code == DataError.exit_code == 4  # missing data, not a wrong config
        assert f"run `sft prepare --config {tmp_path / 'c.yaml'}` first" in result.stderr


def test_evaluate_a_folder_that_is_not_a_run(tmp_path):
    result = invoke("evaluate", "--run-dir", str(tmp_path))
    assert result.exit_code == RunDirError.exit_code == 5
    assert "is not a complete run directory (no config.yaml)" in result.stderr


def test_hub_export_of_a_folder_without_a_checkpoint(tmp_path):
    result = invoke("hub", "export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.exit_code == HubError.exit_code == 6
    assert "lacks config.json" in result.stderr


def test_resume_and_overwrite_together_is_a_usage_error(tmp_path):
    result = invoke("train", "--config", "x.yaml", "--resume", "--overwrite")
    assert result.exit_code == 2
