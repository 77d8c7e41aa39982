"""A trained run loaded back: its config, labels, inference engine and fallback, from `best` or `last`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from sft.config import Config
from sft.data.dialogue import context_segment
from sft.data.example import Example
from sft.engine import Engine
from sft.errors import CheckpointError, one_line
from sft.fallback import Fallback
from sft import hardware, precision
from sft.hub import resolve
from sft.rundir import RunDir


@dataclass
class TrainedRun:
    """What evaluation and prediction need from a run directory."""

    run: RunDir | None
    config: Config | None
    labels: list[str]
    engine: Engine  # or any engine with `probabilities(texts, contexts)` (sft/engine.py)
    fallback: Fallback = Fallback()
    vocab: str | None = None  # the preprocessor's vocab.txt, where it is on disk

    def probabilities(self, examples: Sequence[Example]) -> np.ndarray:
        context_turns = self.config.data.context_turns if self.config else 0
        contexts = [context_segment(e.context, context_turns) for e in examples] if context_turns else None
        return self.engine.probabilities([e.text for e in examples], contexts)


ENGINES = ("tf", "onnx", "onnx-int8")


def load_trained(run: RunDir, which: str = "best", engine: str = "tf", threads: int = 0,
                 spin: bool = False, exact: bool = False) -> TrainedRun:
    """The run's `best` (or `last`) weights behind `engine`: "tf", the classifier rebuilt from the
    run's config, its matmuls in bfloat16 where training would choose it on this CPU (float32 if
    `exact`, as exports need); "onnx" or "onnx-int8", the run exported once for ONNX Runtime
    (RUN/export/...) and read back with `threads` (0: one a core) and, if `spin`, spin-waiting threads."""
    if engine != "tf":
        from sft.export import export_onnx_run
        from sft.onnx_model import OnnxModel

        run.require_weights(which)
        model = OnnxModel(export_onnx_run(run, which, quantize=engine == "onnx-int8"), threads, spin)
        return TrainedRun(run, run.config(), run.labels(), model, Fallback.read(run))
    from sft.model import build_classifier, non_finite_weights

    run.require_weights(which)
    config, labels = run.config(), run.labels()
    handles = resolve.Handles.of_run(run.run_info(), config.model)
    preprocessor = resolve.load(handles.preprocessor, "preprocessor")
    model = build_classifier(config.model, len(labels), encoder=handles.encoder)
    try:
        tf.train.Checkpoint(model=model).read(str(run.weights(which))).expect_partial()
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError(f"the {which} weights of run '{run.path}' cannot be read "
                              f"({one_line(str(e))[:200]}); train the run again") from None
    if non_finite_weights(model):
        raise CheckpointError(f"the {which} weights of run '{run.path}' are not finite (NaN or infinite): "
                              "the run diverged; train it again with a lower train.learning_rate")
    bfloat16 = not exact and hardware.inference_in_bfloat16(config.runtime.precision, hardware.detect())
    if bfloat16:
        precision.configure("mixed_bfloat16")
    engine = Engine(model, preprocessor, config.model.max_seq_length, with_context=config.data.context_turns > 0,
                    bfloat16=bfloat16)
    return TrainedRun(run, config, labels, engine, Fallback.read(run), handles.vocab)
