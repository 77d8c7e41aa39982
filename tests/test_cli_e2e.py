"""prepare -> train -> evaluate -> predict through the CLI on the tiny model, asserting on what they write."""

import json
from pathlib import Path

import pytest

from sft.data.example import read_jsonl
from tests.conftest import sft_cli as run, write_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_hub):
    root = tmp_path_factory.mktemp("e2e")
    train = f"{{run_dir: {root / 'run'}, epochs: 3, batch_size: 8, learning_rate: 1.0e-3}}"
    run("train", "--config", write_project(root, tiny_hub / "encoder", 20, train))
    return root


def test_train_writes_a_complete_run_directory(trained):
    names = {p.name for p in (trained / "run").iterdir()}
    assert {"config.yaml", "labels.json", "run.json", "checkpoints", "model", "metrics.jsonl",
            "train_summary.json"} <= names
    summary = json.loads((trained / "run" / "train_summary.json").read_text())
    assert summary["epochs"] == 3 and summary["steps"] == 3 * summary["steps_per_epoch"]
    lines = (trained / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert json.loads((trained / "run" / "labels.json").read_text()) == ["balance", "greeting", "lost_card"]


def test_every_epoch_logs_its_curves_to_tensorboard_however_few_its_steps(trained):
    import tensorflow as tf

    steps = json.loads((trained / "run" / "train_summary.json").read_text())["steps_per_epoch"]
    assert steps < 50  # under runtime.log_every_steps: the epoch's end logs what the steps did
    seen: dict[str, list[int]] = {}
    for events in sorted((trained / "run" / "tensorboard").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                seen.setdefault(value.tag, []).append(event.step)
    epoch_ends = [steps, 2 * steps, 3 * steps]
    for tag in ("train/loss", "train/learning_rate", "train/examples_per_second", "validation/loss",
                "validation/accuracy", "validation/macro_f1", "validation/weighted_f1"):
        assert seen.get(tag) == epoch_ends, tag


def test_train_prints_its_outcome_on_stdout(trained):
    result = run("train", "--resume", "--run-dir", trained / "run")
    assert "best epoch" in result.stdout and f"run directory: {trained / 'run'}" in result.stdout
    assert "run directory" not in result.stderr


def test_evaluate_json_has_the_documented_keys_and_matches_predict(trained):
    result = run("evaluate", "--run-dir", trained / "run", "--json")
    metrics = json.loads(result.stdout)
    assert metrics == json.loads((trained / "run" / "eval_test.json").read_text())
    assert {"accuracy", "macro", "micro", "weighted", "per_class", "confusion_matrix", "n"} <= set(metrics)
    for average in ("macro", "micro", "weighted"):
        assert set(metrics[average]) == {"precision", "recall", "f1"}
    test = read_jsonl(trained / "data" / "test.jsonl")
    assert metrics["n"] == len(test)
    assert sum(m["support"] for m in metrics["per_class"].values()) == len(test)

    # The same model, asked through `sft predict`, gives the same accuracy.
    (trained / "texts.txt").write_text("".join(e.text + "\n" for e in test))
    lines = run("predict", "--run-dir", trained / "run", "--input", trained / "texts.txt", "--json").stdout
    predictions = [json.loads(line) for line in lines.splitlines()]
    assert [p["text"] for p in predictions] == [e.text for e in test]
    correct = sum(p["label"] == e.label for p, e in zip(predictions, test))
    assert metrics["accuracy"] == pytest.approx(correct / len(test))
    assert all(0.0 < p["confidence"] <= 1.0 for p in predictions)


def test_an_existing_run_directory_is_refused_and_left_intact(trained):
    before = (trained / "run" / "train_summary.json").read_text()
    result = run("train", "--config", trained / "c.yaml", code=5)
    assert "already exists: pass --resume" in result.stderr
    assert (trained / "run" / "train_summary.json").read_text() == before


def test_resume_of_a_finished_run_trains_no_more(trained):
    result = run("train", "--resume", "--run-dir", trained / "run", "--json")
    assert json.loads(result.stdout)["steps"] == json.loads(
        (trained / "run" / "train_summary.json").read_text())["steps"]


def test_the_same_seed_repeats_the_run(trained):
    run("train", "--config", trained / "c.yaml", "--run-dir", trained / "again")

    def history(run_dir):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k not in ("epoch_seconds", "time")} for line in lines]

    assert history(trained / "again") == history(trained / "run")


def test_without_a_validation_split_the_last_epoch_is_the_best(trained):
    out = trained / "no-validation"
    run("prepare", "--config", trained / "c.yaml", "--set", "data.validation_size=0", "--out", out / "data")
    run("train", "--config", trained / "c.yaml", "--set", "train.epochs=2", "--data", out / "data",
        "--run-dir", out / "run")
    summary = json.loads((out / "run" / "train_summary.json").read_text())
    assert summary["validation_examples"] == 0 and summary["best_epoch"] == 2
    assert json.loads(run("evaluate", "--run-dir", out / "run", "--json").stdout)["n"] > 0


def test_a_run_is_loaded_with_the_handles_it_recorded(trained, tmp_path):
    import shutil

    import yaml

    run_dir = tmp_path / "run"
    shutil.copytree(trained / "run", run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    assert {"encoder", "preprocessor", "vocab"} <= set(info) and Path(info["vocab"]).is_file()
    expected = json.loads(run("evaluate", "--run-dir", run_dir, "--json").stdout)["accuracy"]

    # The config's handle is gone; the recorded one still loads the run.
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["model"]["encoder"] = str(tmp_path / "moved-away")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    assert json.loads(run("evaluate", "--run-dir", run_dir, "--json").stdout)["accuracy"] == expected

    # A recorded folder that is gone (a run copied to another machine): the config's handle again.
    shutil.copytree(trained / "run", run_dir, dirs_exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps(info | {"encoder": str(tmp_path / "elsewhere")}))
    assert json.loads(run("evaluate", "--run-dir", run_dir, "--json").stdout)["accuracy"] == expected


def test_a_resumed_run_keeps_the_precision_auto_chose_for_it(trained, tmp_path, monkeypatch):
    import shutil

    from sft import hardware

    run_dir = tmp_path / "run"
    shutil.copytree(trained / "run", run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    info["plan"]["precision"] = "mixed_bfloat16"  # as if started on a CPU with AMX, under precision auto
    (run_dir / "run.json").write_text(json.dumps(info))
    (run_dir / "config.yaml").write_text((run_dir / "config.yaml").read_text().replace("precision: float32",
                                                                                          "precision: auto"))
    monkeypatch.setattr(hardware, "detect", lambda: hardware.Hardware(frozenset({"avx2"})))  # resumed elsewhere
    result = run("train", "--resume", "--run-dir", run_dir, code=3)  # not float32 quietly, halfway through
    assert "mixed_bfloat16 does nothing on this CPU" in result.stderr


def test_a_run_scored_without_a_class_logs_its_epochs_and_shows_context_before_training(tmp_path, tiny_hub):
    import datetime
    import re

    train = (f"{{run_dir: {tmp_path / 'run'}, epochs: 2, batch_size: 8, learning_rate: 1.0e-3, "
             "select_metric: macro_f1_excluding}")
    config = write_project(tmp_path, tiny_hub / "encoder", 12, train, "metrics: {exclude_labels: [greeting]}\n",
                           data="context_turns: 2, context_speaker: true")
    examples = [line for line in run("train", "--config", config, "--dry-run").stderr.splitlines() if " example " in line]
    assert any(re.search(r"\[SEP\] \[SEP\]$", line) for line in examples)  # an opener: empty context
    assert any(re.search(r"\[SEP\] [^[].* \[SEP\]$", line) for line in examples)  # and one with context

    result = run("train", "--config", config)
    assert re.search(r"epoch 1/2 step (\d+)/\1 loss .* ETA \d+:\d\d:\d\d", result.stderr)
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert datetime.datetime.fromisoformat(record["time"]).tzinfo is not None
        assert record["train_loss"] > 0 and record["epoch_seconds"] > 0
        assert {"macro_f1_excluding", "micro_f1_excluding"} <= set(record["validation"])
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["select_metric"] == "macro_f1_excluding"

    scored = json.loads(run("evaluate", "--run-dir", tmp_path / "run", "--json").stdout)
    assert scored["excluding"]["labels"] == ["greeting"]
    other = json.loads(run("evaluate", "--run-dir", tmp_path / "run", "--json", "--exclude-label", "balance").stdout)
    assert other["excluding"]["labels"] == ["balance"]
    assert "micro excl." in run("evaluate", "--run-dir", tmp_path / "run").stdout


def test_an_excluding_select_metric_needs_labels_to_exclude(tmp_path):
    (tmp_path / "c.yaml").write_text("train: {select_metric: micro_f1_excluding}\n")
    result = run("train", "--config", tmp_path / "c.yaml", code=3)
    assert "needs metrics.exclude_labels" in result.stderr
