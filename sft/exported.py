"""An export read back: its metadata (TensorFlow-free) and the SavedModel as an inference engine.

`sft serve` answers through `ExportedModel`: texts and contexts in, probabilities
out, from the same graph `sft export` ships to TF Serving; or, for an ONNX export,
through `sft.onnx_model.OnnxModel`, which offers the same methods. `load_export`
picks the one an export needs.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sft.config import Config, config_from_dict
from sft.errors import ConfigError, RunDirError, one_line
from sft.fallback import Fallback
from sft.rundir import RunDir


@dataclass(frozen=True)
class ExportInfo:
    """What `assets.extra/sft.json` says of an export: everything a server needs besides the graph."""

    FILE = "sft.json"

    labels: list[str]
    fallback: Fallback
    config: Config
    source: dict  # the run, weights and fallback it was exported from
    format: str = "savedmodel"  # or "onnx"
    onnx: dict | None = None  # an ONNX export's: quantize, lower_case, and the checks made at export

    MODEL_FILES = {"savedmodel": "saved_model.pb", "onnx": "model.onnx"}

    @staticmethod
    def folder(export: str | Path) -> Path:
        """TF Serving's place for files beside a SavedModel (an ONNX export keeps its own there too)."""
        return Path(export) / "assets.extra"

    @classmethod
    def read(cls, export: str | Path) -> ExportInfo:
        path = cls.folder(export) / cls.FILE
        formats = [kind for kind, name in cls.MODEL_FILES.items() if (Path(export) / name).is_file()]
        if not formats or not path.is_file():
            raise RunDirError(f"'{export}' is not a folder written by `sft export` (it needs saved_model.pb or "
                              f"model.onnx, and assets.extra/{cls.FILE}); export a run with "
                              "`sft export --run-dir RUN --out DIR`")
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            return cls(saved["labels"], Fallback(**saved["fallback"]), config_from_dict(saved["config"]),
                       saved["source"], formats[0], saved.get("onnx"))
        except (ConfigError, ValueError, KeyError, TypeError) as e:
            raise RunDirError(f"'{path}' is damaged ({e}); export the run again") from None


def weights_stamp(run: RunDir, which: str) -> dict:
    """Which weights and fallback an export holds: a run trained further, or whose threshold was
    chosen since (at training's end), is exported again."""
    stat = run.weights(which).with_suffix(".index").stat()
    fallback = Fallback.read(run)
    return {"run": str(run.path.resolve()), "model": which, "weights_mtime_ns": stat.st_mtime_ns,
            "weights_size": stat.st_size, "fallback": [fallback.label, fallback.threshold]}


class ExportedModel:
    """An export loaded with TensorFlow: class probabilities for texts and their contexts."""

    def __init__(self, export: str | Path, bfloat16: bool | None = None):
        """`bfloat16`: None decides as `sft predict` does, by the export's runtime.precision and this CPU."""
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the ops the preprocessor's graph needs)

        from sft import hardware, precision

        self.path = Path(export)
        self.info = ExportInfo.read(export)
        self.saved = tf.saved_model.load(str(export))
        self._tf = tf
        if bfloat16 is None:  # as `sft predict` runs the run (sft.trained)
            bfloat16 = hardware.inference_in_bfloat16(self.info.config.runtime.precision, hardware.detect())
        self.bfloat16 = bfloat16
        if bfloat16:
            precision.configure("mixed_bfloat16")
        self._callable: dict[str, object] = {}  # the signatures called so far, frozen where bfloat16 runs
        self._freezing = threading.Lock()
        self._answers_with_context = "classify_dialogue" in self.saved.signatures

    @property
    def labels(self) -> list[str]:
        return self.info.labels

    @functools.cached_property
    def signature_inputs(self) -> dict[str, dict[str, str]]:
        """Each signature's inputs and their dtype ("string", "int32")."""
        return {name: {key: spec.dtype.name for key, spec in fn.structured_input_signature[1].items()}
                for name, fn in self.saved.signatures.items()}

    def signature_defs(self) -> dict[str, dict]:
        """The signatures as TF Serving's metadata API describes them."""
        from tensorflow.core.framework import types_pb2

        def tensors(specs):
            return {key: {"dtype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum),
                          "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""}
                                                   for d in spec.shape.as_list()], "unknown_rank": False}}
                    for key, spec in sorted(specs.items())}

        return {name: {"inputs": tensors(fn.structured_input_signature[1]), "outputs": tensors(fn.structured_outputs),
                       "method_name": "tensorflow/serving/predict"}
                for name, fn in sorted(self.saved.signatures.items())}

    def run_signature(self, name: str, columns: dict[str, list]) -> dict[str, np.ndarray]:
        """A signature called as TF Serving calls it; the model's refusal (token ids out of range)
        is a `ValueError` naming it."""
        tf = self._tf
        specs = self.saved.signatures[name].structured_input_signature[1]
        try:
            inputs = {key: tf.constant(values, specs[key].dtype) for key, values in columns.items()}
            outputs = self._signature(name)(**inputs)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            message = getattr(e, "message", str(e))
            found = re.search(r"indices\[[^\]]*\] = -?\d+ is not in \[\d+, \d+\)", message)
            raise ValueError(found.group(0) if found else one_line(message)[:300]) from None
        return {key: value.numpy() for key, value in outputs.items()}

    def probabilities(self, texts: list[str], contexts: list[str] | None = None) -> np.ndarray:
        """[len(texts), classes] float32. `contexts[i]` is text i's context segment; a model
        trained without context ignores it."""
        tf = self._tf
        if self._answers_with_context:
            context = contexts if contexts is not None else [""] * len(texts)
            outputs = self._signature("classify_dialogue")(text=tf.constant(texts, tf.string),
                                                          context=tf.constant(context, tf.string))
        else:
            outputs = self._signature("serving_default")(text=tf.constant(texts, tf.string))
        return outputs["probabilities"].numpy()

    def _signature(self, name: str):
        """Signature `name`, called with keyword arguments. Where bfloat16 runs, its weights are
        frozen into bfloat16 constants on its first call, and only then: a frozen signature holds
        about 0.6 GB more (MiniLM-L6), and most servers only ever call one. The lock is taken
        only to freeze, so that the signatures already frozen answer meanwhile."""
        if (function := self._callable.get(name)) is not None:
            return function
        with self._freezing:
            if name not in self._callable:
                from sft import precision

                function = self.saved.signatures[name]
                self._callable[name] = precision.cast_once(function) if self.bfloat16 else function
            return self._callable[name]

    def warm_up(self, max_batch: int) -> None:
        warm_up(self.probabilities, max_batch)


def warm_up(probabilities, max_batch: int) -> None:
    """Run batches of 1, 2, 4 ... `max_batch` texts once, so that no request pays for a first run."""
    size = 1
    while True:
        probabilities(["warm up " * (size % 7 + 1)] * min(size, max_batch))
        if size >= max_batch:
            break
        size *= 2


def load_export(export: str | Path, threads: int = 0, spin: bool = False):
    """The engine an export needs: `ExportedModel` for a SavedModel, `OnnxModel` for ONNX."""
    if ExportInfo.read(export).format == "onnx":
        from sft.onnx_model import OnnxModel

        return OnnxModel(export, threads, spin)
    return ExportedModel(export)
