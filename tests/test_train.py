"""The training loop's promises: exact resume after a crash, clean stops, accumulation, early stopping,
the weight average."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tests.conftest import sft_cli as invoke, write_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_hub):
    """Prepared data (60 dialogues) and a config: 2 epochs of 36 steps of 4 examples, weights averaged
    (so that resuming, stopping and distribution are checked with the average in the checkpoint)."""
    root = tmp_path_factory.mktemp("train")
    write_project(root, tiny_hub / "encoder", 60, "{epochs: 2, batch_size: 4, learning_rate: 1.0e-3, ema_decay: 0.9}",
                  validation_size=0.1, test_size=0.1, runtime="log_every_steps: 5, checkpoint_every_steps: 5")
    return root


def weights(run_dir, which="last") -> dict[str, np.ndarray]:
    """The model's float weights (dropout counters aside)."""
    reader = tf.train.load_checkpoint(str(run_dir / "model" / which / "weights"))
    tensors = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map() if name.startswith("model/")}
    return {name: value for name, value in tensors.items() if value.dtype.kind == "f"}


def assert_same_weights(a: dict, b: dict, atol=0.0):
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=atol, rtol=0, err_msg=name)


def start(project, run_dir, *extra):
    """`sft train` in its own process, stderr read line by line."""
    return subprocess.Popen(
        [sys.executable, "-m", "sft", "train", "--config", str(project / "c.yaml"), "--run-dir", str(run_dir), *extra],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )


def wait_for_step(process, step: int) -> str:
    seen = []
    for line in process.stderr:
        seen.append(line)
        if f" step {step}/" in line:
            return "".join(seen)
    raise AssertionError("training ended before step %d:\n%s" % (step, "".join(seen)))


@pytest.fixture(scope="module")
def uninterrupted(project):
    invoke("train", "--config", project / "c.yaml", "--run-dir", project / "straight")
    return project / "straight"


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(project, uninterrupted):
    run_dir = project / "killed"
    process = start(project, run_dir)
    wait_for_step(process, 10)  # checkpoints at steps 5 and 10, mid-way through epoch 1 of 36 steps
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "train_summary.json").exists()
    latest = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run_dir / "checkpoints")))
    assert latest.get_tensor("position/.ATTRIBUTES/VARIABLE_VALUE") > 0  # really mid-epoch

    invoke("train", "--resume", "--run-dir", run_dir)
    assert_same_weights(weights(run_dir), weights(uninterrupted))
    assert [json.loads(x)["validation"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()] == [
        json.loads(x)["validation"] for x in (uninterrupted / "metrics.jsonl").read_text().splitlines()
    ]


def test_sigterm_saves_a_checkpoint_and_exits_75(project, uninterrupted):
    run_dir = project / "terminated"
    process = start(project, run_dir)
    wait_for_step(process, 5)
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait() == 75, rest
    assert "stopped by SIGTERM" in rest and "sft train --resume --run-dir" in rest
    assert "Traceback" not in rest
    invoke("train", "--resume", "--run-dir", run_dir)
    assert_same_weights(weights(run_dir), weights(uninterrupted))


def test_accumulating_four_micro_batches_of_8_matches_one_batch_of_32(project, calm_hub):
    common = ["--config", project / "c.yaml", "--set", f"model.encoder={calm_hub / 'encoder'}",
              "--set", "model.dropout=0", "--set", "train.epochs=1", "--set", "train.batch_size=32"]
    invoke("train", *common, "--run-dir", project / "one-batch")
    invoke("train", *common, "--set", "train.accumulation_steps=4", "--run-dir", project / "accumulated")
    assert_same_weights(weights(project / "accumulated"), weights(project / "one-batch"), atol=1e-5)


def test_early_stopping_ends_when_the_metric_stops_improving(project):
    result = invoke("train", "--config", project / "c.yaml", "--run-dir", project / "early",
                    "--set", "train.epochs=6", "--set", "train.learning_rate=0",
                    "--set", "train.early_stopping.patience=2")
    summary = json.loads((project / "early" / "train_summary.json").read_text())
    # nothing can improve at learning rate 0: epoch 1 is best, epochs 2 and 3 use up the patience
    assert summary["epochs"] == 3 and summary["stopped_early"] and summary["best_epoch"] == 1
    assert "early stop" in result.stderr


def test_a_run_with_an_average_saves_the_average_and_keeps_training_the_weights(uninterrupted):
    checkpoint = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(uninterrupted / "checkpoints")))
    names = checkpoint.get_variable_to_shape_map()
    averages = [checkpoint.get_tensor(n) for n in names if n.startswith("average/")]
    saved = weights(uninterrupted, "last")
    trained = {n: checkpoint.get_tensor(n) for n in saved}  # the same names in the training checkpoint
    assert len(averages) == len(saved) > 10
    for name, value in saved.items():  # the saved model is the average...
        assert any(a.shape == value.shape and np.array_equal(a, value) for a in averages), name
    # ...and the weights training goes on from are not
    assert not all(np.array_equal(trained[n], saved[n]) for n in trained)


def test_dry_run_prints_the_plan_and_writes_nothing(project):
    result = invoke("train", "--config", project / "c.yaml", "--run-dir", project / "dry", "--dry-run",
                    "--set", "train.class_weights=balanced", "--set", "train.accumulation_steps=2")
    plan = json.loads(result.stdout)
    counts = plan["train_class_counts"]
    n, classes = sum(counts.values()), len(counts)
    for label, count in counts.items():
        assert plan["class_weights"][label] == pytest.approx(n / (classes * count), abs=1e-4)
    assert plan["global_batch"] == 4 and plan["micro_batch"] == 2 and plan["replicas"] == 1
    assert plan["steps_per_epoch"] == -(-n // 4)
    assert "example " in result.stderr  # decoded examples shown
    assert not (project / "dry").exists()


def test_a_diverging_run_stops_with_a_clear_message(project):
    result = invoke("train", "--config", project / "c.yaml", "--run-dir", project / "diverged",
                    "--set", "train.learning_rate=1e12", "--set", "train.clip_norm=0",
                    "--set", "train.warmup_fraction=0", "--set", "runtime.log_every_steps=1", code=7)
    assert "training diverged" in result.stderr
    latest = tf.train.latest_checkpoint(str(project / "diverged" / "checkpoints"))
    if latest:  # a checkpoint, if any was written before the loss broke, holds finite weights
        reader = tf.train.load_checkpoint(latest)
        assert all(np.isfinite(reader.get_tensor(k)).all() for k in reader.get_variable_to_shape_map()
                   if reader.get_tensor(k).dtype.kind == "f")


def free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_like_one_process_with_the_same_global_batch(project, calm_hub):
    """MultiWorkerMirroredStrategy over real gRPC on localhost: each worker takes half of every batch."""
    overrides = ["--set", f"model.encoder={calm_hub / 'encoder'}", "--set", "model.dropout=0",
                 "--set", "train.epochs=1"]
    invoke("train", "--config", project / "c.yaml", *overrides, "--run-dir", project / "single")

    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        env = os.environ | {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "sft", "train", "--config", str(project / "c.yaml"), *map(str, overrides),
             "--run-dir", str(project / "two-workers")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        ))
    outputs = [w.communicate(timeout=300)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert "on 2 replica(s)" in outputs[0]
    # All-reduce sums in another order than one process does. Adam divides each update by
    # the gradient's running scale, which magnifies rounding where gradients are near 0:
    # the stated tolerance is a quarter of the largest single update (the learning rate, 1e-3).
    assert_same_weights(weights(project / "two-workers"), weights(project / "single"), atol=2.5e-4)
    metrics = [json.loads((project / run / "metrics.jsonl").read_text()) for run in ("two-workers", "single")]
    two_workers, single = (m["validation"] for m in metrics)
    assert two_workers.pop("loss") == pytest.approx(single.pop("loss"), rel=1e-3)  # the weights' rounding
    assert two_workers == single  # accuracy and F1: the same answers
    assert not any(p.name.startswith("sft-worker-") for p in (project / "two-workers").iterdir())
