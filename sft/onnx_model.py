"""An ONNX export read back with ONNX Runtime: the fast CPU engine, without TensorFlow.

Texts are tokenised by `sft.tokenizer` (the TF preprocessor's ids, outside the
graph) and run through `model.onnx` (float32, or int8 when exported with
`--quantize int8`). `OnnxModel` offers what `sft.exported.ExportedModel` does,
so `sft serve` answers the same API with either, TF Serving's signatures included.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sft import hardware
from sft.exported import ExportInfo, warm_up
from sft.hub import INPUT_NAMES
from sft.tokenizer import Tokenizer, characters

BATCH_SIZE = 64


class OnnxModel:
    """`model.onnx` in an ONNX Runtime session: class probabilities for texts and their contexts."""

    def __init__(self, export: str | Path, threads: int = 0, spin: bool = False, model_file: str | Path | None = None):
        import onnxruntime as ort

        self.path = Path(export)
        self.info = ExportInfo.read(export)
        config = self.info.config
        self.with_context = config.data.context_turns > 0
        self.tokenizer = Tokenizer(ExportInfo.folder(export) / "vocab.txt", self.info.onnx["lower_case"],
                                   config.model.max_seq_length, self.with_context)
        self.vocab_size = self.tokenizer.vocab_size
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or hardware.cores()
        options.inter_op_num_threads = 1
        # Spinning threads answer a little sooner and burn a core while idle: off, unless asked for.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.session = ort.InferenceSession(str(model_file or self.path / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])

    @property
    def labels(self) -> list[str]:
        return self.info.labels

    def logits(self, features: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["logits"], features)[0]

    def probabilities(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> np.ndarray:
        """[len(texts), classes] float32, in batches of similar lengths; `contexts[i]` is text i's
        context segment, read by a model trained with context."""
        result = np.empty((len(texts), len(self.labels)), np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), BATCH_SIZE):
            rows = order[start : start + BATCH_SIZE]
            context = [contexts[i] for i in rows] if contexts is not None else None
            result[rows] = softmax(self.logits(self.tokenizer.encode([texts[i] for i in rows], context)))
        return result

    @property
    def signature_inputs(self) -> dict[str, dict[str, str]]:
        """The SavedModel export's signatures, which this model answers too."""
        signatures = {"serving_default": {"text": "string"}, "classify_ids": dict.fromkeys(INPUT_NAMES, "int32")}
        if self.with_context:
            signatures["classify_dialogue"] = {"text": "string", "context": "string"}
        return signatures

    def signature_defs(self) -> dict[str, dict]:
        """The signatures as TF Serving's metadata API describes them."""
        def tensors(specs: dict[str, tuple[str, list[int]]]) -> dict:
            return {key: {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in shape],
                                                           "unknown_rank": False}}
                    for key, (dtype, shape) in sorted(specs.items())}

        outputs = tensors({"label": ("DT_STRING", [-1]), "class_id": ("DT_INT32", [-1]),
                           "probabilities": ("DT_FLOAT", [-1, len(self.labels)]), "confidence": ("DT_FLOAT", [-1])})
        dtypes = {"string": ("DT_STRING", [-1]), "int32": ("DT_INT32", [-1, -1])}
        return {name: {"inputs": tensors({key: dtypes[kind] for key, kind in inputs.items()}), "outputs": outputs,
                       "method_name": "tensorflow/serving/predict"}
                for name, inputs in sorted(self.signature_inputs.items())}

    def run_signature(self, name: str, columns: dict[str, list]) -> dict[str, np.ndarray]:
        """A signature answered as the SavedModel answers it: text normalised as its graph does,
        ids checked against the vocabulary (a `ValueError` naming the first out of range)."""
        if name == "classify_ids":
            try:
                features = {key: np.asarray(columns[key], np.int32) for key in INPUT_NAMES}
            except (ValueError, TypeError, OverflowError) as e:
                raise ValueError(f"token ids must be int32 arrays of one shape ({e})") from None
            outside = np.argwhere((features["input_word_ids"] < 0) | (features["input_word_ids"] >= self.vocab_size))
            if len(outside):
                where = tuple(int(i) for i in outside[0])
                raise ValueError(f"indices[{','.join(map(str, where))}] = {features['input_word_ids'][where]} "
                                 f"is not in [0, {self.vocab_size})")
            probabilities = softmax(self.logits(features))
        else:
            texts = [graph_clean(t) for t in columns["text"]]
            contexts = [graph_clean(t) for t in columns["context"]] if "context" in columns else None
            probabilities = self.probabilities(texts, contexts)
        return self._classify(probabilities)

    def _classify(self, probabilities: np.ndarray) -> dict[str, np.ndarray]:
        """The SavedModel signatures' outputs: the fallback label where the model is unsure."""
        confidence, class_id = probabilities.max(-1), probabilities.argmax(-1).astype(np.int32)
        declined = self.info.fallback.declines(probabilities)
        labels = np.array(self.labels, object)[class_id]
        labels[declined] = self.info.fallback.label or ""
        return {"label": np.array([label.encode() for label in labels], object),
                "class_id": np.where(declined, -1, class_id).astype(np.int32),
                "probabilities": probabilities, "confidence": confidence}

    def warm_up(self, max_batch: int) -> None:
        warm_up(self.probabilities, max_batch)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return (shifted / shifted.sum(-1, keepdims=True)).astype(np.float32)


_CONTROL_OR_FORMAT = re.compile(f"[{characters('Cc', 'Cf')}]")
_ASCII_SPACE = re.compile(r"[\t\n\f\r ]+")


def graph_clean(text: str) -> str:
    """The SavedModel's own normalisation of `text` inputs (sft.export): NFKC, control and format
    characters to spaces, ASCII white space collapsed and stripped, as its RE2 patterns do."""
    text = _CONTROL_OR_FORMAT.sub(" ", unicodedata.normalize("NFKC", text))
    return _ASCII_SPACE.sub(" ", text).strip(" ")
