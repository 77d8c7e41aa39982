"""`sft train`: fine-tune the encoder and head in a custom GradientTape loop.

The loop owns checkpointing, validation, model selection and logging; the step
functions only compute.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from sft import inputs, runtime
from sft.config import Config
from sft.data.example import read_jsonl
from sft.errors import DataError, RunDirError
from sft.files import atomic_dir, write_json
from sft.hub import resolve
from sft.metrics import classification_metrics
from sft.model import build_classifier, input_signature, set_seed
from sft.optim import build_optimizer
from sft.predict import Predictor
from sft.rundir import RunDir

log = logging.getLogger("sft")


def train(config: Config, data_dir: Path, run: RunDir, resume: bool = False) -> dict:
    """Train on the prepared folder `data_dir`, writing everything into `run`; return the summary."""
    # -- runtime first: thread pools are fixed once TensorFlow runs its first op
    runtime.configure(config.runtime)
    set_seed(config.train.seed)
    t = config.train

    # -- data: the prepared splits, tokenised once
    labels = _read_labels(data_dir)
    label_ids = {label: i for i, label in enumerate(labels)}
    train_examples = read_jsonl(data_dir / "train.jsonl")
    validation_examples = read_jsonl(data_dir / "validation.jsonl")
    if not train_examples:
        raise DataError(f"'{data_dir / 'train.jsonl'}' holds no examples")
    preprocessor = resolve.load(resolve.preprocessor_for(config.model), "preprocessor")
    train_split = inputs.encode(preprocessor, train_examples, label_ids)
    validation_split = inputs.encode(preprocessor, validation_examples, label_ids)
    for name, split in (("train", train_split), ("validation", validation_split)):
        if (split.labels < 0).any():
            raise DataError(f"{data_dir / name}.jsonl holds labels missing from labels.json: prepare the data again")

    # -- model, optimizer, and the state a checkpoint carries
    model = build_classifier(config.model, len(labels), seed=t.seed)
    predictor = Predictor(model, preprocessor, config.model.max_seq_length)
    steps_per_epoch = math.ceil(len(train_split) / t.batch_size)
    total_steps = steps_per_epoch * t.epochs
    optimizer = build_optimizer(t, total_steps)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    best = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best_metric")
    best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch, best=best, best_epoch=best_epoch)
    manager = tf.train.CheckpointManager(checkpoint, str(run.checkpoints), max_to_keep=1)
    if resume:
        if manager.latest_checkpoint is None:
            raise RunDirError(f"run '{run.path}' has no checkpoint to resume from; start it again with --overwrite")
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        log.info("resumed from %s at epoch %d, step %d", manager.latest_checkpoint, int(epoch), int(optimizer.iterations))
    else:
        run.write_setup(config, labels, {
            "data_dir": str(data_dir.resolve()),
            "encoder": resolve.resolve_handle(config.model.encoder, "encoder"),
            "preprocessor": resolve.resolve_handle(resolve.preprocessor_for(config.model), "preprocessor"),
        })

    variables = model.trainable_variables

    @tf.function(input_signature=[input_signature(), tf.TensorSpec([None], tf.int32)])
    def train_step(features, labels):
        with tf.GradientTape() as tape:
            logits = model(features, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        gradients = tape.gradient(loss, variables)
        gradient_norm = tf.linalg.global_norm(gradients)
        if t.clip_norm > 0:
            gradients, _ = tf.clip_by_global_norm(gradients, t.clip_norm, use_norm=gradient_norm)
        optimizer.apply_gradients(zip(gradients, variables))
        return {"loss": loss, "gradient_norm": gradient_norm}

    _log_plan(config, labels, train_split, validation_split, steps_per_epoch)
    started = time.perf_counter()
    step, examples_seen = int(optimizer.iterations), 0
    while int(epoch) < t.epochs:
        # -- one epoch of length-grouped batches; the order depends on (seed, epoch) only
        epoch_started, losses = time.perf_counter(), []
        window_started, window_examples = epoch_started, 0
        dataset = inputs.train_batches(
            train_split, preprocessor, t.batch_size, config.model.max_seq_length, t.seed, int(epoch)
        )
        for features, batch_labels in dataset:
            logs = train_step(features, batch_labels)
            losses.append(logs["loss"])
            step += 1
            window_examples += len(batch_labels)
            if step % config.runtime.log_every_steps == 0:
                # .numpy() waits for the step to finish: only at log time, never every step
                loss, norm = logs["loss"].numpy(), logs["gradient_norm"].numpy()
                now = time.perf_counter()
                log.info(
                    "epoch %d step %d/%d loss %.4f grad-norm %.3f lr %.2e %.1f examples/s",
                    int(epoch) + 1, step, total_steps, loss, norm, float(optimizer.learning_rate),
                    window_examples / (now - window_started),
                )
                examples_seen, window_examples, window_started = examples_seen + window_examples, 0, now
        examples_seen += window_examples
        epoch.assign_add(1)
        train_loss = float(np.mean([loss.numpy() for loss in losses]))

        # -- validate, keep the best model
        record = {"epoch": int(epoch), "step": int(optimizer.iterations), "train_loss": train_loss,
                  "epoch_seconds": round(time.perf_counter() - epoch_started, 2)}
        if len(validation_split):
            predicted = predictor.probabilities(validation_split).argmax(-1)
            scores = classification_metrics(validation_split.labels, predicted, labels)
            record["validation"] = {"accuracy": scores["accuracy"], "macro_f1": scores["macro"]["f1"]}
            value = record["validation"][t.select_metric]
        else:
            value = -train_loss  # no validation split: the latest model is the best we know
        if value > float(best):
            best.assign(value)
            best_epoch.assign(epoch)
            _save_weights(model, run, "best")

        # -- checkpoint, then record: a crash before the save repeats the epoch on --resume
        manager.save(checkpoint_number=int(epoch))
        run.append_metrics(record)
        log.info("epoch %d done: %s", int(epoch), _format(record))

    _save_weights(model, run, "last")
    summary = {
        "epochs": int(epoch),
        "steps": int(optimizer.iterations),
        "steps_per_epoch": steps_per_epoch,
        "train_examples": len(train_split),
        "validation_examples": len(validation_split),
        "select_metric": t.select_metric,
        "best_epoch": int(best_epoch),
        "best_validation": float(best) if len(validation_split) else None,
        "train_seconds": round(time.perf_counter() - started, 2),
        "examples_per_second": round(examples_seen / max(time.perf_counter() - started, 1e-9), 2),
    }
    write_json(run.summary_file, summary)
    return summary


def _save_weights(model, run: RunDir, which: str) -> None:
    """Weights only (no optimizer state), swapped in whole so a crash never leaves half a model."""
    with atomic_dir(run.weights(which).parent, replace=True) as tmp:
        tf.train.Checkpoint(model=model).write(str(tmp / run.weights(which).name))


def _read_labels(data_dir: Path) -> list[str]:
    import json

    path = data_dir / "labels.json"
    if not path.is_file():
        raise DataError(f"'{data_dir}' is not a prepared-data folder (no labels.json): run `sft prepare` first")
    labels = json.loads(path.read_text(encoding="utf-8"))
    if len(labels) < 2:
        raise DataError(f"'{path}' lists {len(labels)} class(es); a classifier needs at least 2")
    return labels


def _log_plan(config: Config, labels, train_split, validation_split, steps_per_epoch: int) -> None:
    counts = np.bincount(train_split.labels, minlength=len(labels))
    log.info(
        "training %s: %d train / %d validation examples, %d classes (%d..%d a class), "
        "batch %d, %d steps/epoch, %d epochs; mean packed length %.1f",
        config.model.encoder, len(train_split), len(validation_split), len(labels), counts.min(), counts.max(),
        config.train.batch_size, steps_per_epoch, config.train.epochs, train_split.lengths.mean(),
    )


def _format(record: dict) -> str:
    flat = {k: v for k, v in record.items() if k != "validation"} | {
        f"validation_{k}": v for k, v in record.get("validation", {}).items()
    }
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in flat.items())
