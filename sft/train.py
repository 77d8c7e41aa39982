"""`sft train`: fine-tune the encoder and head in a custom GradientTape loop.

Read top down: `train` plans (`Plan`: runtime, data, sizes; the dry run stops
there), builds (`Session`: model, optimizer, step functions, checkpoint; the
benchmark builds its training phases from it), runs the loop (`_loop`) and finishes
(`_finish`: last model, fallback threshold, summary). The loop owns
checkpointing, validation, model selection, early stopping and logging; the
step functions only compute and return a dict of logs. Everything a resumed run needs (model,
optimizer, weight average, position in the epoch, best metric, dropout counters)
is in the checkpoint, and an epoch's batch order depends on (seed, epoch) only,
so a run killed at any point and resumed ends where the uninterrupted run ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import math
import shutil
import signal
import time
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import numpy as np
import tensorflow as tf

from sft import inputs, losses, precision, runtime
from sft.averaging import WeightAverage
from sft.config import Config, TrainConfig
from sft.data.prepared import PreparedDir
from sft.engine import Engine
from sft.errors import (CheckpointError, ConfigError, DataError, RunDirError, SftError, TrainingDiverged,
                        TrainingInterrupted, one_line)
from sft.fallback import choose_fallback
from sft.files import atomic_dir, write_json
from sft.hub import resolve
from sft.metrics import check_excluded, classification_metrics, excluding
from sft.model import build_classifier, non_finite_weights, set_seed
from sft.optim import build_optimizer
from sft.progress import Progress, summary_scalar
from sft.rundir import RunDir

log = logging.getLogger("sft")


@dataclass
class LoopState:
    """The loop's own counters, as variables so that checkpoints carry them."""

    epoch: tf.Variable  # epochs finished
    position: tf.Variable  # micro-batches done in the current epoch
    best: tf.Variable  # best validation metric so far
    best_epoch: tf.Variable
    bad_epochs: tf.Variable  # epochs since the last improvement (early stopping)

    @classmethod
    def create(cls) -> LoopState:
        def variable(value, dtype, name):
            return tf.Variable(value, dtype=dtype, trainable=False, name=name,
                               aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

        return cls(variable(0, tf.int64, "epoch"), variable(0, tf.int64, "position"),
                   variable(-np.inf, tf.float64, "best"), variable(0, tf.int64, "best_epoch"),
                   variable(0, tf.int64, "bad_epochs"))


def train(config: Config, data: PreparedDir, run: RunDir, resume: bool = False, dry_run: bool = False) -> dict:
    """Train on the prepared folder `data`, writing everything into `run`; return the summary."""
    plan = Plan.make(config, data)  # runtime, data, sizes: all that can fail before a model exists
    if dry_run:
        plan.log_examples()
        return plan.describe()
    session = Session.build(plan)
    if plan.chief and not resume:  # everything is checked and built: only now may an old run make way
        run.claim()
    manager = tf.train.CheckpointManager(session.checkpoint, str(runtime.write_dir(run.checkpoints, plan.chief)),
                                         max_to_keep=2)
    if resume:
        latest = _restore_newest(session.checkpoint, run)  # the chief's checkpoints, for every worker
        log.info("resumed from %s: epoch %d, step %d", latest, session.epoch + 1, session.step)
    elif plan.chief:
        run.write_setup(config, plan.labels, {"data_dir": str(data.path.resolve()),
                                              **dataclasses.asdict(plan.handles), "plan": plan.describe()})
    started = time.perf_counter()
    examples_seen = _loop(session, run, manager)
    return _finish(session, run, manager, examples_seen, time.perf_counter() - started)


@dataclass
class Plan:
    """What a run will do, settled before any model exists: the dry run prints it."""

    config: Config
    precision: str  # in force: `auto` resolved by the hardware
    strategy: tf.distribute.Strategy
    chief: bool  # this process writes the run directory
    labels: list[str]
    handles: resolve.Handles
    preprocessor: Any
    train_examples: list  # as prepared, for the dry run's decoded examples
    train: inputs.EncodedSplit  # tokenised once; the preprocessor stays on the host
    validation: inputs.EncodedSplit
    class_weights: np.ndarray

    @classmethod
    def make(cls, config: Config, data: PreparedDir) -> Plan:
        # Thread pools, precision and the strategy are fixed before TensorFlow's first op.
        precision_in_force = runtime.configure(config.runtime)
        strategy = runtime.make_strategy(config.runtime.strategy)
        set_seed(config.train.seed)
        labels = data.labels()
        check_excluded(config.metrics.exclude_labels, labels)
        label_ids = {label: i for i, label in enumerate(labels)}
        train_examples, validation_examples = data.examples("train"), data.examples("validation")
        if not train_examples:
            raise DataError(f"'{data.split_file('train')}' holds no examples")
        handles = resolve.Handles.resolve(config.model)
        preprocessor = resolve.load(handles.preprocessor, "preprocessor")
        splits = {name: inputs.encode(preprocessor, examples, label_ids, config.data.context_turns)
                  for name, examples in (("train", train_examples), ("validation", validation_examples))}
        for name, split in splits.items():
            if (split.labels < 0).any():
                raise DataError(f"{data.split_file(name)} holds labels missing from labels.json: "
                                "prepare the data again")
        plan = cls(config, precision_in_force, strategy, runtime.is_chief(), labels, handles, preprocessor,
                   train_examples, splits["train"], splits["validation"],
                   _class_weights(config.train, labels, splits["train"].labels))
        plan.log()
        return plan

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.config.train.batch_size)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.train.epochs

    def describe(self) -> dict:
        """What a reviewer needs before the first step; returned by --dry-run, kept in run.json."""
        t = self.config.train
        counts = np.bincount(self.train.labels, minlength=len(self.labels))
        return {
            "encoder": self.config.model.encoder,
            "train_examples": len(self.train),
            "validation_examples": len(self.validation),
            "classes": len(self.labels),
            "train_class_counts": dict(zip(self.labels, counts.tolist())),
            "class_weights": dict(zip(self.labels, [round(float(w), 4) for w in self.class_weights])),
            "global_batch": t.batch_size,
            "micro_batch": t.batch_size // t.accumulation_steps,
            "accumulation_steps": t.accumulation_steps,
            "replicas": self.strategy.num_replicas_in_sync,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": t.epochs,
            "precision": self.precision,
            "mean_packed_length": round(float(self.train.lengths.mean()), 1),
        }

    def log(self) -> None:
        t, d = self.config.train, self.describe()
        counts = d["train_class_counts"].values()
        log.info("plan: %d train / %d validation examples, %d classes (%d..%d a class); global batch %d = %d "
                 "micro-batch(es) of %d on %d replica(s); %d steps/epoch, %d epochs; mean packed length %.1f",
                 d["train_examples"], d["validation_examples"], d["classes"], min(counts), max(counts), t.batch_size,
                 t.accumulation_steps, d["micro_batch"], d["replicas"], d["steps_per_epoch"], t.epochs,
                 d["mean_packed_length"])
        if t.class_weights != "none":
            log.info("class weights: %s", d["class_weights"])

    def log_examples(self, count: int = 3) -> None:
        """A few training examples as the model will see them: the word pieces of the packed input;
        the shortest, and where the data has context, two of them with context."""
        vocab = _vocabulary(self.handles)
        order = np.argsort(self.train.lengths, kind="stable")
        with_context = [i for i in order if self.train_examples[i].context][: count - 1]
        alone = [i for i in order if not self.train_examples[i].context][: count - len(with_context)]
        chosen = [*alone, *with_context]
        context = self.train.context_ids
        features = inputs.pack_batch(self.preprocessor, tf.gather(self.train.text_ids, chosen),
                                     tf.gather(context, chosen) if context is not None else None,
                                     self.config.model.max_seq_length)
        for row, i in zip(features["input_word_ids"].numpy(), chosen):
            pieces = " ".join(vocab[x] if vocab else str(x) for x in row if x != 0)
            example = self.train_examples[i]
            log.info("example %s [%s]: %s", example.source or i, example.label, pieces)


@dataclass
class Session:
    """Everything the loop runs, built inside the strategy's scope: model, optimizer, the loop's
    counters, the step functions, the inference engine for validation, and the checkpoint of them all.
    `scripts/bench.py` builds its training phases from it (with batches of its own)."""

    plan: Plan
    model: Any
    optimizer: Any
    state: LoopState
    train_step: TrainStep
    engine: Engine
    checkpoint: tf.train.Checkpoint
    step_and_apply: Any = None  # batch -> logs; the optimizer steps (a step's last micro-batch)
    step_and_accumulate: Any = None  # batch -> logs; gradients are added up

    @classmethod
    def build(cls, plan: Plan) -> Session:
        t = plan.config.train
        with plan.strategy.scope():
            model = build_classifier(plan.config.model, len(plan.labels), seed=t.seed, encoder=plan.handles.encoder)
            optimizer = build_optimizer(t, plan.total_steps, model.trainable_variables)
            optimizer = precision.wrap_optimizer(optimizer, plan.precision)
            state = LoopState.create()
        train_step = TrainStep(model, optimizer, plan.strategy, t, plan.class_weights, xla=plan.config.runtime.xla)
        average = train_step.average
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, **vars(state),
                                         **({"average": average.averages} if average else {}))
        engine = Engine(model, plan.preprocessor, plan.config.model.max_seq_length, xla=plan.config.runtime.xla,
                        with_context=plan.config.data.context_turns > 0)
        session = cls(plan, model, optimizer, state, train_step, engine, checkpoint)
        spec = session.batches(0, 0)[1].element_spec
        session.step_and_apply = train_step.function(True, spec)
        session.step_and_accumulate = train_step.function(False, spec)
        return session

    def batches(self, epoch: int, position: int = 0):
        """(plan of the rest of the epoch, distributed dataset of its micro-batches)."""
        return distributed_epoch(self.plan.strategy, self.plan.train, self.plan.preprocessor, self.plan.config,
                                 epoch, position)

    def evaluated(self):
        """What validation and the saved models see: the weights, or their average swapped in."""
        average = self.train_step.average
        return average.swapped_in() if average else contextlib.nullcontext()

    @property
    def epoch(self) -> int:
        return int(self.state.epoch.numpy())

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def finished(self) -> bool:
        t = self.plan.config.train
        out_of_patience = t.early_stopping.patience and int(self.state.bad_epochs.numpy()) >= t.early_stopping.patience
        return self.epoch >= t.epochs or bool(out_of_patience)


class _Window:
    """Training losses since the last log line (a step's micro-batch losses sum to its mean loss),
    and over the epoch so far."""

    def __init__(self):
        self.losses, self.steps = [], 0
        self.epoch_total, self.epoch_steps = 0.0, 0

    def take_mean(self) -> float:
        """The mean loss a step over the window, which starts again (.numpy() waits for the device)."""
        mean = float(np.sum([x.numpy() for x in self.losses])) / self.steps
        self.epoch_total += mean * self.steps
        self.epoch_steps += self.steps
        self.losses, self.steps = [], 0
        return mean

    def take_epoch_mean(self) -> float | None:
        """The mean loss a step over the epoch's logged steps (since the start, or a resume)."""
        mean = self.epoch_total / self.epoch_steps if self.epoch_steps else None
        self.epoch_total, self.epoch_steps = 0.0, 0
        return mean


def _loop(s: Session, run: RunDir, manager: tf.train.CheckpointManager) -> int:
    """The epochs, read top to bottom; returns how many examples the optimizer stepped on."""
    plan, t, rt = s.plan, s.plan.config.train, s.plan.config.runtime
    writer = (tf.summary.create_file_writer(str(run.tensorboard)) if plan.chief
              else tf.summary.create_noop_writer())
    stop, window, progress = _StopOnSignal(), _Window(), Progress(plan.total_steps, s.step)
    examples_seen = 0

    def log_window(epoch: int, step: int, logs: dict) -> None:
        mean_loss = window.take_mean()
        _check_finite(mean_loss, step, manager)
        rate, learning_rate = progress.examples_per_second(), float(s.optimizer.learning_rate.numpy())
        progress.line("epoch %d/%d step %d/%d loss %.4f grad-norm %.3f lr %.2e %.1f examples/s, ETA %s",
                      epoch + 1, t.epochs, step - epoch * plan.steps_per_epoch, plan.steps_per_epoch, mean_loss,
                      logs["grad_norm"].numpy(), learning_rate, rate, progress.eta())
        summary_scalar("train/loss", mean_loss, step=step)
        summary_scalar("train/learning_rate", learning_rate, step=step)
        summary_scalar("train/examples_per_second", rate, step=step)

    with stop, writer.as_default():
        while not s.finished():
            epoch, epoch_started = s.epoch, time.perf_counter()
            rest, dataset = s.batches(epoch, int(s.state.position.numpy()))
            for i, batch in enumerate(dataset):
                # -- forward/backward; the optimizer steps on the last micro-batch of each step
                end_of_step = bool(rest.step_ends[i])
                logs = (s.step_and_apply if end_of_step else s.step_and_accumulate)(batch)
                s.state.position.assign_add(1)
                window.losses.append(logs["loss"])
                if not end_of_step:
                    continue
                examples_seen += int(rest.step_sizes[i])
                window.steps += 1
                progress.step(int(rest.step_sizes[i]))
                step = int(progress.done)

                # -- log (.numpy() waits for the device: here only, never every step)
                if step % rt.log_every_steps == 0:
                    log_window(epoch, step, logs)

                # -- checkpoint now and then, and whenever asked to stop
                if stop.requested or (rt.checkpoint_every_steps and step % rt.checkpoint_every_steps == 0):
                    _check_finite(float(logs["loss"].numpy()), step, manager)
                    _check_weights(s.model, step, manager)
                    manager.save(checkpoint_number=step)
                if stop.requested:
                    raise TrainingInterrupted(f"stopped by {stop.requested} at step {step}; checkpoint saved. "
                                              f"Continue with: sft train --resume --run-dir {run.path}")

            # -- every epoch logs its training loss, however few steps it had; then the weights are checked
            if window.steps:
                log_window(epoch, int(progress.done), logs)
            _check_weights(s.model, int(progress.done), manager)  # before any of them is validated or saved

            # -- validate, keep the best model, count epochs without improvement
            with s.evaluated():
                record = _validate(s.engine, plan.validation, plan.labels, t.select_metric,
                                   plan.config.metrics.exclude_labels)
                record |= {"epoch": epoch + 1, "step": s.step, "train_loss": window.take_epoch_mean(),
                           "epoch_seconds": round(time.perf_counter() - epoch_started, 1),
                           "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
                value = record.pop("_select")
                # Without a validation split there is nothing to select on: the newest epoch counts as best.
                improved = not len(plan.validation) or value > float(s.state.best.numpy()) + t.early_stopping.min_delta
                if improved:
                    _save_weights(s.model, run, "best", plan.chief)
            if improved:
                s.state.best.assign(value)
                s.state.best_epoch.assign(epoch + 1)
                s.state.bad_epochs.assign(0)
            else:
                s.state.bad_epochs.assign_add(1)
            s.state.epoch.assign_add(1)
            s.state.position.assign(0)
            manager.save(checkpoint_number=s.step)
            if plan.chief:
                run.append_metrics(record)
                for key, v in record.get("validation", {}).items():
                    summary_scalar(f"validation/{key}", v, step=s.step)
            progress.line("epoch %d done: %s", epoch + 1, _format(record))
            if s.finished() and s.epoch < t.epochs:
                progress.line("early stop: no improvement of %s for %d epochs", t.select_metric,
                              t.early_stopping.patience)
    return examples_seen


def _finish(s: Session, run: RunDir, manager, examples_seen: int, seconds: float) -> dict:
    """The last model, the fallback threshold of the best one, and what happened."""
    plan, t = s.plan, s.plan.config.train
    with s.evaluated():
        _save_weights(s.model, run, "last", plan.chief)
    if not plan.chief:
        shutil.rmtree(manager.directory, ignore_errors=True)
    if plan.config.fallback.label is not None and len(plan.validation) and plan.chief:
        tf.train.Checkpoint(model=s.model).read(str(run.weights("best"))).expect_partial()
        fallback = choose_fallback(s.engine, plan.validation, plan.labels, plan.config.fallback)
        write_json(run.fallback_file, fallback)
        log.info("fallback '%s' below confidence %.4f: validation accuracy %.4f -> %.4f, %.1f%% answered",
                 fallback["label"], fallback["threshold"], fallback["validation_accuracy"],
                 fallback["validation_accuracy_with_fallback"], 100 * fallback["validation_answered_fraction"])
    if t.baseline and plan.chief:
        _fit_baseline(run, plan)
    summary = {
        "epochs": s.epoch,
        "steps": s.step,
        "steps_per_epoch": plan.steps_per_epoch,
        "stopped_early": s.epoch < t.epochs,
        "train_examples": len(plan.train),
        "validation_examples": len(plan.validation),
        "select_metric": t.select_metric,
        "best_epoch": int(s.state.best_epoch.numpy()),
        "best_validation": float(s.state.best.numpy()) if len(plan.validation) else None,
        "precision": plan.precision,
        "train_seconds": round(seconds, 2),
        "examples_per_second": round(examples_seen / max(seconds, 1e-9), 2),
    }
    if plan.chief:
        write_json(run.summary_file, summary)
    return summary


def _fit_baseline(run: RunDir, plan: Plan) -> None:
    """The frozen-encoder baseline (sft/baseline.py). The run is complete without it: a failure is logged."""
    from sft import baseline

    started = time.perf_counter()
    try:
        _, scores = baseline.fit_run(run, baseline.Embedder(run, plan.preprocessor))
    except (tf.errors.OpError, ValueError, OSError, SftError) as e:
        log.warning("baseline not fitted (%s); sft evaluate fits it later", one_line(str(e))[:200])
        return
    log.info("baseline, linear on the frozen encoder (L2 %g): validation %s %.4f, in %.1f s", scores["l2"],
             plan.config.train.select_metric, scores.get(plan.config.train.select_metric, scores["accuracy"]),
             time.perf_counter() - started)


class TrainStep:
    """Forward and backward of one micro-batch on every replica; the optimizer steps on a step's last,
    and the weight average (`train.ema_decay`) follows it.

    With accumulation, gradients add up in non-trainable variables (one a
    replica) until the step's last micro-batch; every loss is divided by the
    whole step's batch size, so the sum is the step's mean whatever the split.
    Under a loss-scaling optimizer (mixed_float16) the backward pass sees the
    scaled loss, and the gradients are unscaled before clipping.
    """

    def __init__(self, model, optimizer, strategy: tf.distribute.Strategy, config: TrainConfig,
                 class_weights: np.ndarray, xla: bool = False):
        self.model, self.optimizer, self.strategy, self.config = model, optimizer, strategy, config
        self.xla, self.loss_scaled = xla, precision.scales_loss(optimizer)
        self.variables = model.trainable_variables
        self.weight_of_class = tf.constant(class_weights, tf.float32)
        with strategy.scope():
            self.accumulators = [
                tf.Variable(tf.zeros_like(v), trainable=False, name=f"accumulated/{v.name.split(':')[0]}",
                            synchronization=tf.VariableSynchronization.ON_READ,
                            aggregation=tf.VariableAggregation.SUM)
                for v in self.variables
            ] if config.accumulation_steps > 1 else []
            self.average = WeightAverage(self.variables, config.ema_decay) if config.ema_decay else None

    def function(self, apply: bool, spec) -> tf.types.experimental.GenericFunction:
        """`step(batch) -> {"loss", "grad_norm"}`; `apply`: the step's last micro-batch."""

        def step(batch):
            loss, norm = self.strategy.run(self._replica_step, args=(*batch, apply))
            return {"loss": self.strategy.reduce("sum", loss, axis=None),
                    "grad_norm": self.strategy.experimental_local_results(norm)[0]}

        # One signature with [None, None] inputs: batches of every length reuse one trace
        # (XLA still compiles once per shape; inputs.LENGTH_MULTIPLE bounds how many).
        return tf.function(step, input_signature=[spec], jit_compile=self.xla)

    def _replica_step(self, features, labels, step_size, apply: bool):
        c = self.config
        with tf.GradientTape() as tape:
            if c.rdrop:  # each example twice in one batch: dropout draws two masks for it
                doubled = {name: tf.concat([x, x], axis=0) for name, x in features.items()}
                first, second = tf.split(tf.cast(self.model(doubled, training=True), tf.float32), 2)
                per_example = losses.rdrop(labels, first, second, c.label_smoothing, c.rdrop)
            else:
                logits = tf.cast(self.model(features, training=True), tf.float32)
                per_example = losses.cross_entropy(labels, logits, c.label_smoothing)
            per_example *= tf.gather(self.weight_of_class, labels)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=step_size)
            backward = self.optimizer.get_scaled_loss(loss) if self.loss_scaled else loss
        gradients = tape.gradient(backward, self.variables)
        if self.accumulators:
            for accumulator, gradient in zip(self.accumulators, gradients):
                accumulator.assign_add(tf.convert_to_tensor(gradient))
            if not apply:
                return loss, tf.constant(0.0)
            gradients = [accumulator.read_value() for accumulator in self.accumulators]
        norm = self._apply(gradients)
        for accumulator in self.accumulators:
            accumulator.assign(tf.zeros_like(accumulator))
        return loss, norm

    def _apply(self, gradients):
        if self.strategy.num_replicas_in_sync > 1:  # sum over replicas first, so that clipping sees the real norm
            context = tf.distribute.get_replica_context()
            gradients = context.all_reduce("sum", [tf.convert_to_tensor(g) for g in gradients])
        if self.loss_scaled:  # an overflow leaves non-finite gradients: the optimizer skips that step
            gradients = self.optimizer.get_unscaled_gradients(gradients)
        norm = tf.linalg.global_norm(gradients)
        if self.config.clip_norm > 0:
            gradients, _ = tf.clip_by_global_norm(gradients, self.config.clip_norm, use_norm=norm)
        self.optimizer.apply_gradients(zip(gradients, self.variables), experimental_aggregate_gradients=False)
        if self.average is not None:
            self.average.update(self.optimizer.iterations)
        return norm


def distributed_epoch(strategy, split: inputs.EncodedSplit, preprocessor, config: Config, epoch: int,
                      position: int = 0):
    """(plan of the rest of the epoch, distributed dataset of its micro-batches)."""
    t = config.train
    rest = inputs.plan_epoch(split.lengths, t.batch_size, t.accumulation_steps, t.seed, epoch).after(position)

    def dataset_fn(context: tf.distribute.InputContext):
        local = context.num_replicas_in_sync // context.num_input_pipelines
        return inputs.train_dataset(split, preprocessor, rest, config.model.max_seq_length,
                                    replicas=context.num_replicas_in_sync,
                                    first_replica=context.input_pipeline_id * local, local_replicas=local,
                                    length_multiple=inputs.LENGTH_MULTIPLE if config.runtime.xla else 1)

    return rest, strategy.distribute_datasets_from_function(dataset_fn)


def _validate(engine: Engine, split: inputs.EncodedSplit, labels: list[str], metric: str,
              exclude: list[str]) -> dict:
    """Validation scores, plus `_select`: the value that picks the best model."""
    if not len(split):
        return {"_select": 0.0}
    probabilities = engine.split_probabilities(split)
    scores = classification_metrics(split.labels, probabilities.argmax(-1), labels)
    gold = probabilities[np.arange(len(split)), split.labels]
    validation = {"loss": float(-np.log(np.maximum(gold, 1e-12)).mean()), "accuracy": scores["accuracy"],
                  "macro_f1": scores["macro"]["f1"], "weighted_f1": scores["weighted"]["f1"]}
    if exclude:
        left = excluding(scores["confusion_matrix"]["matrix"], labels, exclude)
        validation |= {"macro_f1_excluding": left["macro"]["f1"], "micro_f1_excluding": left["micro"]["f1"]}
    return {"validation": validation, "_select": validation[metric]}


def _check_finite(loss: float, step: int, manager: tf.train.CheckpointManager) -> None:
    if not math.isfinite(loss):
        kept = manager.latest_checkpoint or "none yet"
        raise TrainingDiverged(
            f"loss is {loss} at step {step}: training diverged (try a lower train.learning_rate); "
            f"the last good checkpoint is kept: {kept}"
        )


def _class_weights(t: TrainConfig, labels: list[str], train_labels: np.ndarray) -> np.ndarray:
    """A weight a class for the loss: 1 everywhere, balanced from the train split, or from the table."""
    if t.class_weights == "balanced":
        counts = np.bincount(train_labels, minlength=len(labels)).astype(np.float64)
        weights = np.where(counts > 0, counts.sum() / (len(labels) * np.maximum(counts, 1)), 0.0)
    elif t.class_weights == "table":
        unknown = sorted(set(t.class_weight_table) - set(labels))
        if unknown:
            raise ConfigError(f"train.class_weight_table names unknown labels {unknown} (labels: {', '.join(labels)})")
        weights = np.array([t.class_weight_table.get(label, 1.0) for label in labels])
    else:
        weights = np.ones(len(labels))
    return weights.astype(np.float32)


def _restore_newest(checkpoint: tf.train.Checkpoint, run: RunDir) -> str:
    """Restore the newest of the run's checkpoints that reads back whole; say which were skipped.

    A crash or a full disk can leave the newest one truncated while an older one
    beside it is intact: resuming from that loses some steps, not the run.
    """
    newest_first = sorted(run.checkpoints.glob("ckpt-*.index"), key=lambda p: int(p.stem.partition("-")[2]),
                          reverse=True)
    if not newest_first:
        raise RunDirError(f"run '{run.path}' has no checkpoint to resume from; start it again with --overwrite")
    skipped = []
    for index in newest_first:
        prefix = str(index.with_suffix(""))
        try:
            checkpoint.restore(prefix).assert_existing_objects_matched()
        except Exception as e:  # damage shows as OpError, ValueError, IndexError...: all mean "not this one"
            skipped.append(f"{index.stem} ({one_line(str(e))[:160]})")
            continue
        if skipped:
            log.warning("skipped checkpoint(s) that do not restore: %s", "; ".join(skipped))
        return prefix
    raise CheckpointError(f"no checkpoint of run '{run.path}' restores: {'; '.join(skipped)}; "
                          "start the run again with --overwrite")


def _check_weights(model, step: int, manager: tf.train.CheckpointManager) -> None:
    """A loss read now and then can miss a divergence that already reached the weights."""
    broken = non_finite_weights(model)
    if broken:
        raise TrainingDiverged(
            f"{len(broken)} weight tensor(s) are not finite at step {step} ({broken[0]}, ...): training diverged "
            f"(try a lower train.learning_rate); the last good checkpoint is kept: "
            f"{manager.latest_checkpoint or 'none yet'}"
        )


def _save_weights(model, run: RunDir, which: str, chief: bool) -> None:
    """Weights only (no optimizer state), swapped in whole so a crash never leaves half a model."""
    if not chief:  # every worker takes part in the save; only the chief's copy is kept
        scratch = runtime.write_dir(run.path, chief)
        tf.train.Checkpoint(model=model).write(str(scratch / "weights"))
        shutil.rmtree(scratch, ignore_errors=True)
        return
    with atomic_dir(run.weights(which).parent, replace=True) as tmp:
        tf.train.Checkpoint(model=model).write(str(tmp / run.weights(which).name))


def _vocabulary(handles: resolve.Handles) -> list[str] | None:
    try:
        path = handles.vocab or resolve.load(handles.encoder, "encoder").vocab_file.asset_path.numpy().decode()
        return Path(path).read_text(encoding="utf-8").splitlines()
    except Exception:  # an encoder without a vocab_file asset: show ids instead
        return None


def format_summary(summary: dict, run_path: Path) -> str:
    """The outcome of `sft train`, as the lines a person reads on stdout."""
    best = summary["best_validation"]
    return "\n".join([
        f"trained {summary['epochs']} epoch(s), {summary['steps']} steps"
        + (" (stopped early)" if summary["stopped_early"] else "")
        + f" in {summary['train_seconds']:.1f} s, {summary['examples_per_second']:.1f} examples/s, "
          f"{summary['precision']}",
        f"best epoch {summary['best_epoch']}: validation {summary['select_metric']} "
        + (f"{best:.4f}" if best is not None else "n/a (no validation split)"),
        f"run directory: {run_path}",
    ])


def _format(record: dict) -> str:
    flat = {k: v for k, v in record.items() if k not in ("validation", "time")} | {
        f"validation_{k}": v for k, v in record.get("validation", {}).items()
    }
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in flat.items())


class _StopOnSignal:
    """While active, SIGINT and SIGTERM ask the loop to checkpoint and stop at the next step."""

    def __init__(self):
        self.requested: str | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second signal: stop now
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
