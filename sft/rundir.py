"""The run directory's layout, read and written in one place.

    RUN/
      config.yaml          the resolved configuration
      labels.json          class names; a class id is its index
      run.json             where the prepared data came from, and the resolved model handles
      checkpoints/         tf.train.CheckpointManager: model, optimizer, step, epoch (for --resume)
      tensorboard/         training and validation scalars
      model/best/          weights of the epoch with the best validation metric (evaluate's default)
      model/last/          weights after the last epoch
      metrics.jsonl        one line a validation pass
      train_summary.json   the outcome of training
      fallback.json        the out-of-scope threshold chosen on validation (when fallback.label is set)
      eval_<split>.json    written by `sft evaluate`, with eval_<split>_errors.csv and report_<split>/
      export/<model>/      the serving SavedModel `sft serve --run-dir` exports (`sft export`'s layout)
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from sft.config import Config, config_from_dict
from sft.errors import RunDirError
from sft.files import is_nonempty_dir, remove_leftovers, replace_dir, write_json, write_text


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def labels_file(self) -> Path:
        return self.path / "labels.json"

    @property
    def run_file(self) -> Path:
        return self.path / "run.json"

    @property
    def fallback_file(self) -> Path:
        return self.path / "fallback.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_file(self) -> Path:
        return self.path / "train_summary.json"

    def weights(self, which: str) -> Path:
        """Checkpoint prefix of the `best` or `last` model weights."""
        return self.path / "model" / which / "weights"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    def export_dir(self, which: str) -> Path:
        return self.path / "export" / which

    def eval_file(self, split: str) -> Path:
        return self.path / f"eval_{split}.json"

    def errors_file(self, split: str) -> Path:
        return self.path / f"eval_{split}_errors.csv"

    def report_dir(self, split: str) -> Path:
        return self.path / f"report_{split}"

    @property
    def baseline_dir(self) -> Path:
        return self.path / "baseline"

    # --- creating and opening -------------------------------------------------

    @classmethod
    def new(cls, path: str | Path, overwrite: bool) -> RunDir:
        """A run to start at `path`: refused where one exists, unless `overwrite`. Nothing is
        written yet: `claim` replaces the old run once the new one is under way."""
        run = cls(Path(path))
        if is_nonempty_dir(run.path) and not overwrite:
            raise RunDirError(
                f"run directory '{run.path}' already exists: pass --resume to continue it, "
                "--overwrite to replace it, or --run-dir to choose another"
            )
        return run

    def claim(self) -> None:
        """Make the folder this run writes into; an old run there is removed now, not before:
        a start that fails on its config, data or model leaves the old run as it was."""
        remove_leftovers(self.path)
        if is_nonempty_dir(self.path):
            replace_dir(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run, as `evaluate`, `predict` and `--resume` need it."""
        run = cls(Path(path))
        for needed in (run.config_file, run.labels_file, run.run_file):
            if not needed.is_file():
                raise RunDirError(f"'{run.path}' is not a complete run directory (no {needed.name}); run `sft train` first")
        return run

    # --- contents -------------------------------------------------------------

    def write_setup(self, config: Config, labels: list[str], run_info: dict) -> None:
        write_text(self.config_file, config.to_yaml())
        write_json(self.labels_file, labels)
        write_json(self.run_file, run_info)

    def config(self) -> Config:
        import yaml

        return config_from_dict(yaml.safe_load(self.config_file.read_text(encoding="utf-8")))

    def resumed(self, config: Config) -> Config:
        """`config` with the precision `auto` chose when this run started: a run does not change
        precision halfway (and float16's loss scale is part of its checkpoints)."""
        chosen = self.run_info().get("plan", {}).get("precision")
        if not chosen or config.runtime.precision != "auto":
            return config
        return dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, precision=chosen))

    def labels(self) -> list[str]:
        return json.loads(self.labels_file.read_text(encoding="utf-8"))

    def run_info(self) -> dict:
        return json.loads(self.run_file.read_text(encoding="utf-8"))

    def append_metrics(self, record: dict) -> None:
        with self.metrics_file.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def has_weights(self, which: str) -> bool:
        return self.weights(which).with_suffix(".index").is_file()

    def require_weights(self, which: str) -> None:
        if not self.has_weights(which):
            when = ("after its first epoch" if which == "best" else
                    "when training ends; use --model best, or finish it with `sft train --resume`")
            raise RunDirError(f"run '{self.path}' has no {which} model weights: they are written {when}")


def is_chief() -> bool:
    """Only the chief writes metrics, summaries and models; the others compute alongside.

    Read from TF_CONFIG, as the multi-worker strategy reads it: the `chief` task,
    or worker 0 when the cluster names no chief; a single process is its own chief.
    """
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in config.get("cluster", {})
