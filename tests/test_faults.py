"""Fault injection: bad input and broken files fail with one line and their exit code, and leave
what was on disk as it was (checksums of every file before and after)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from sft.config import load_config
from sft.errors import MAX_MESSAGE, ConfigError, DataError, RunDirError
from tests.conftest import sft_cli, write_csv, write_project


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with the SHA-256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def fails(*args, code: int, input: str | bytes | None = None) -> str:
    """Run `sft ARGS`, check the exit code, and that stderr ends in one error line (after the log lines
    of a command that got as far as logging) with no traceback; that line."""
    result = sft_cli(*args, code=code, input=input)
    assert isinstance(result.exception, SystemExit), result.exception  # not an exception that escaped the CLI
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.endswith(errors[0] + "\n"), result.stderr
    assert "Traceback" not in result.stderr and len(errors[0]) <= MAX_MESSAGE + len("error: ")
    return errors[0]


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
    assert message in fails("prepare", "--config", tmp_path / "c.yaml", "--out", tmp_path / "p",
                            code=ConfigError.exit_code)
    assert not (tmp_path / "p").exists()


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
    previous = os.umask(0o027)  # not the usual 022: a hard-coded mode would not pass
    try:
        sft_cli("prepare", "--config", tmp_path / "c.yaml", "--out", tmp_path / "p")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "p").stat().st_mode) == 0o750
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "p").iterdir()} == {0o640}


# -- runs ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_project(tmp_path_factory, tiny_hub) -> Path:
    """A finished 2-epoch run on the tiny encoder, with a checkpoint every 5 steps (two are kept)."""
    root = tmp_path_factory.mktemp("faults")
    config = write_project(root, tiny_hub / "encoder", 24, f"{{run_dir: {root / 'run'}, epochs: 2, batch_size: 4}}",
                           runtime="checkpoint_every_steps: 5")
    sft_cli("train", "--config", config)
    return root


def bad_encoder(project: Path, tmp_path: Path) -> list[str]:
    """Overrides naming an encoder folder that is no SavedModel, beside a good preprocessor."""
    (tmp_path / "no-model").mkdir()
    preprocessor = yaml.safe_load((project / "c.yaml").read_text())["model"]["encoder"].replace("encoder", "preprocessor")
    return ["--set", f"model.encoder={tmp_path / 'no-model'}", "--set", f"model.preprocessor={preprocessor}"]


@pytest.mark.slow
def test_overwrite_with_a_bad_handle_leaves_the_old_run_as_it_was(trained_project, tmp_path):
    before = snapshot(trained_project / "run")
    fails("train", "--config", trained_project / "c.yaml", "--overwrite", *bad_encoder(trained_project, tmp_path),
          code=6)
    assert snapshot(trained_project / "run") == before


@pytest.mark.slow
def test_a_failed_start_creates_nothing(trained_project, tmp_path):
    fails("train", "--config", trained_project / "c.yaml", "--run-dir", tmp_path / "new",
          *bad_encoder(trained_project, tmp_path), code=6)
    assert [p.name for p in tmp_path.iterdir()] == ["no-model"]


@pytest.mark.slow
def test_a_diverging_run_never_saves_non_finite_weights(trained_project, tmp_path):
    # The loss is read every 50 steps (more than the run has): the epoch's end must catch it.
    result = sft_cli("train", "--config", trained_project / "c.yaml", "--run-dir", tmp_path / "run",
                     "--set", "train.learning_rate=1e12", "--set", "train.clip_norm=0",
                     "--set", "train.warmup_fraction=0", "--set", "runtime.checkpoint_every_steps=0", code=7)
    assert result.stderr.splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "run" / "model").exists()  # neither best nor last
    assert not list((tmp_path / "run").glob("checkpoints/ckpt-*.index"))


@pytest.mark.slow
def test_weights_that_are_not_finite_are_refused(trained_project, tmp_path):
    import shutil

    import tensorflow as tf

    from sft.model import build_classifier
    from sft.rundir import RunDir

    run = tmp_path / "run"
    shutil.copytree(trained_project / "run", run)
    prefix = str(run / "model" / "best" / "weights")
    model = build_classifier(RunDir(run).config().model, 3)
    tf.train.Checkpoint(model=model).read(prefix).expect_partial()
    model.set_weights([w * np.nan for w in model.get_weights()])  # what a diverged run would have saved
    tf.train.Checkpoint(model=model).write(prefix)
    before = snapshot(tmp_path)
    for command in (["predict", "--run-dir", run, "--text", "hi", "--json"], ["evaluate", "--run-dir", run],
                    ["export", "--run-dir", run, "--out", tmp_path / "exported"]):
        assert "are not finite" in fails(*command, code=6)
    assert snapshot(tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate_data", "flip_index", "truncate_all"])
def test_resume_falls_back_past_a_corrupt_checkpoint(trained_project, tmp_path, damage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_project / "run", run)
    checkpoints = sorted((run / "checkpoints").glob("ckpt-*.index"), key=lambda p: int(p.stem.split("-")[1]))
    assert len(checkpoints) == 2
    newest = checkpoints[-1].with_suffix("")
    for prefix in {"truncate_data": [checkpoints[-1]], "flip_index": [], "truncate_all": checkpoints}[damage]:
        data = next(prefix.parent.glob(prefix.stem + ".data-*"))
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    if damage == "flip_index":
        index = newest.with_suffix(".index")
        raw = bytearray(index.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        index.write_bytes(bytes(raw))
    if damage == "truncate_all":
        message = fails("train", "--resume", "--run-dir", run, code=6)
        assert "no checkpoint of run" in message and "restores" in message
        return
    result = sft_cli("train", "--resume", "--run-dir", run, "--json")
    assert f"skipped checkpoint(s) that do not restore: {newest.name}" in result.stderr
    assert f"resumed from {checkpoints[0].with_suffix('')}" in result.stderr


def test_prepare_removes_what_a_crashed_prepare_left(tmp_path):
    from sft.files import _HOST

    write_csv(tmp_path / "d.csv", [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(10)])
    (tmp_path / "c.yaml").write_text(f"data: {{files: [{tmp_path / 'd.csv'}]}}\n")
    dead = tmp_path / f".p.tmp-999999999@{_HOST}-abcd"  # no such process on this host
    dead.mkdir()
    (dead / "train.jsonl").write_text("half")
    live = tmp_path / f".p.tmp-{os.getpid()}@{_HOST}-abcd"  # a live process's: not ours to remove
    elsewhere = tmp_path / ".p.tmp-999999999@another_host-abcd"  # another machine's: it may still be writing
    live.mkdir()
    elsewhere.mkdir()
    sft_cli("prepare", "--config", tmp_path / "c.yaml", "--out", tmp_path / "p")
    assert not dead.exists() and live.exists() and elsewhere.exists()
    assert (tmp_path / "p" / "train.jsonl").is_file()


def test_a_crash_between_the_two_renames_of_a_swap_puts_the_old_folder_back(tmp_path):
    from sft.files import _HOST, remove_leftovers

    aside = tmp_path / f".best.old-999999999@{_HOST}-abcd"  # replace_dir renamed `best` here, then died
    (aside / "best").mkdir(parents=True)
    (aside / "best" / "weights.index").write_text("the old weights")
    remove_leftovers(tmp_path / "best")
    assert (tmp_path / "best" / "weights.index").read_text() == "the old weights" and not aside.exists()


# -- the network -----------------------------------------------------------------------------------

@pytest.fixture
def silent_server():
    """A loopback server that accepts connections and never answers; it stops with the test."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_a_model_server_that_never_answers_times_out(silent_server, tmp_path, monkeypatch):
    monkeypatch.setenv("SFT_DOWNLOAD_TIMEOUT", "0.5")
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub"))
    write_csv(tmp_path / "d.csv", [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(20)])
    (tmp_path / "c.yaml").write_text(
        f"data: {{files: [{tmp_path / 'd.csv'}], prepared_dir: {tmp_path / 'p'}}}\n"
        f"model: {{encoder: '{silent_server}/bert', preprocessor: '{silent_server}/pre'}}\n"
        "runtime: {precision: float32}\n")
    sft_cli("prepare", "--config", tmp_path / "c.yaml")
    result = sft_cli("train", "--config", tmp_path / "c.yaml", "--run-dir", tmp_path / "run", "--dry-run", code=6)
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"error: cannot load preprocessor '{silent_server}/pre': timed out")
    assert "raise SFT_DOWNLOAD_TIMEOUT (now 0.5 s)" in last
    assert result.stderr.count("download failed (timed out); attempt") == 2  # retried, then given up
    assert "Downloading TF-Hub Module" in result.stderr  # the user sees what it waits for


# -- the codes no other test reaches ---------------------------------------------------------------

def test_a_bug_keeps_its_traceback_and_exits_1(tmp_path, monkeypatch):
    from sft.data import prepare

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(prepare, "prepare", broken)
    (tmp_path / "c.yaml").write_text("data: {files: [x.csv]}\n")
    result = sft_cli("prepare", "--config", tmp_path / "c.yaml", code=1)
    assert isinstance(result.exception, RuntimeError)  # not turned into a one-line message: it is ours to fix


def test_ctrl_c_outside_training_exits_130(tmp_path, monkeypatch):
    from sft.data import prepare

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "prepare", interrupted)
    (tmp_path / "c.yaml").write_text("data: {files: [x.csv]}\n")
    assert sft_cli("prepare", "--config", tmp_path / "c.yaml", code=130).stderr == "interrupted\n"


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan"])
def test_a_bad_download_timeout_is_a_config_error_that_changes_nothing(value, monkeypatch):
    import logging
    import socket

    from sft.hub import resolve

    monkeypatch.setenv("SFT_DOWNLOAD_TIMEOUT", value)
    absl, timeout = logging.getLogger("absl"), socket.getdefaulttimeout()
    before = (absl.level, absl.propagate, list(absl.handlers))
    with pytest.raises(ConfigError, match=f"SFT_DOWNLOAD_TIMEOUT='{value}' is not a positive number"):
        resolve.load("https://127.0.0.1:9/bert", "encoder")
    assert (absl.level, absl.propagate, list(absl.handlers)) == before and socket.getdefaulttimeout() == timeout
