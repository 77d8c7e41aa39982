"""The experiment configuration: a frozen dataclass tree built once at the CLI edge.

Layers apply in order: the defaults below, then the YAML file, then `--set a.b=c`
overrides (values typed the way YAML types scalars). Validation happens here,
before any TensorFlow work, and every error names the key's full path.
"""

from __future__ import annotations

import dataclasses
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sft.errors import ConfigError


@dataclass(frozen=True)
class Columns:
    """Which raw columns (CSV/TSV header names, JSON keys) hold what; matched after trimming white space."""

    text: str = "text"
    label: str = "label"
    dialogue_id: str | None = None
    turn: str | None = None  # order inside a dialogue: numbers sort as numbers, anything else as text
    speaker: str | None = None


@dataclass(frozen=True)
class SplitFiles:
    """Files already split by their authors; those splits are kept."""

    train: list[str] = field(default_factory=list)
    validation: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CleanConfig:
    """Text cleaning steps, in the order they run; each can be switched off.

    The steps repeat until the text stops changing, so cleaning clean text changes nothing.
    """

    # U+0080-U+009F are Windows-1252 punctuation read as Latin-1 (U+0092 -> U+2019).
    repair_cp1252: bool = True
    html: bool = True  # tags removed, entities such as &amp; decoded
    nfkc: bool = True  # Unicode compatibility normalisation: full-width forms, ligatures, "..." for U+2026
    remove_invisible: bool = True  # control, zero-width and other format characters
    mask_urls: bool = False  # -> [URL]
    mask_emails: bool = False  # -> [EMAIL]
    mask_numbers: bool = False  # -> [NUMBER]
    collapse_whitespace: bool = True  # runs of white space and newlines -> one space; ends trimmed


@dataclass(frozen=True)
class LabelConfig:
    """How raw labels become classes. Labels are always trimmed, inner white space collapsed."""

    casefold: bool = False
    # Raw label -> class, after trimming (and case folding); several labels may merge into one.
    mapping: dict[str, str] = field(default_factory=dict)
    # Classes with fewer examples than this (after de-duplication, all splits but a given
    # test split, which keeps its gold labels) are dropped, or merged into the class `other`.
    min_count: int = field(default=1, metadata={"min": 1})
    rare: Literal["drop", "other"] = "drop"
    other: str = "other"
    # The same example (text and context) under different labels: keep it under
    # its most frequent label (a tie drops it), or drop it.
    conflicts: Literal["majority", "drop"] = "majority"
    # A reviewed CSV of fixes (sft/data/corrections.py; `sft audit` writes one to start from):
    # its `source` column names raw rows as "file:line", its `correct` column a class or `<drop>`.
    corrections: str | None = None


@dataclass(frozen=True)
class DataConfig:
    # Either `files`, pooled and split by the sizes below, or `splits`, kept as
    # given; a split missing from `splits` is carved from train by its size.
    # Pooled files share one dialogue-id space; each given split has its own.
    files: list[str] = field(default_factory=list)
    splits: SplitFiles = field(default_factory=SplitFiles)
    # `auto` goes by the file name: .csv, .tsv/.tab, .jsonl/.ndjson.
    format: Literal["auto", "csv", "tsv", "jsonl"] = "auto"
    # Any Python codec name; a UTF-8 byte-order mark is skipped.
    encoding: str = "utf-8"
    columns: Columns = field(default_factory=Columns)
    # Previous turns of the same dialogue given to the model as a second segment.
    context_turns: int = field(default=0, metadata={"min": 0})
    # Prefix each context turn with its speaker ("Chandler: ..."); needs columns.speaker.
    context_speaker: bool = False
    clean: CleanConfig = field(default_factory=CleanConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    validation_size: float = field(default=0.1, metadata={"min": 0.0, "max": 0.5})
    test_size: float = field(default=0.1, metadata={"min": 0.0, "max": 0.5})
    # A given test split keeps every row and label, exact duplicates included, so that scores
    # compare with its authors'; true removes its exact duplicates (same text, context and label).
    dedup_given_test: bool = False
    seed: int = 13
    prepared_dir: str = "prepared/default"

    def sources(self) -> list[tuple[str | None, str]]:
        """(split or None for pooled, file) for every input file."""
        return [(None, f) for f in self.files] + [
            (s, f) for s in ("train", "validation", "test") for f in getattr(self.splits, s)
        ]


@dataclass(frozen=True)
class ModelConfig:
    # A TF Hub handle: https URL, local SavedModel folder, or `bundled:<name>`.
    encoder: str = "bundled:minilm-l6-uncased"
    # Defaults to the encoder's own preprocessor for bundled handles.
    preprocessor: str | None = None
    max_seq_length: int = field(default=128, metadata={"min": 8, "max": 512})
    dropout: float = field(default=0.1, metadata={"min": 0.0, "max": 0.9})
    # What the classification head reads: `cls`, the encoder's pooled_output (a tanh layer on
    # the [CLS] token); `mean`, the mean of sequence_output over the real tokens.
    pooling: Literal["cls", "mean"] = "cls"


@dataclass(frozen=True)
class EarlyStopping:
    # Epochs without an improvement of at least `min_delta` before training stops; 0: never stop early.
    patience: int = field(default=0, metadata={"min": 0})
    min_delta: float = field(default=0.0, metadata={"min": 0.0})


@dataclass(frozen=True)
class TrainConfig:
    run_dir: str = "runs/default"
    epochs: int = field(default=3, metadata={"min": 1})
    # Examples an optimizer step sees, whatever the accumulation and the number of replicas.
    batch_size: int = field(default=32, metadata={"min": 1})
    # Each step's batch is fed as this many micro-batches, their gradients summed: same math, less memory.
    accumulation_steps: int = field(default=1, metadata={"min": 1})
    learning_rate: float = field(default=5e-5, metadata={"min": 0.0})
    weight_decay: float = field(default=0.01, metadata={"min": 0.0})
    warmup_fraction: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    clip_norm: float = field(default=1.0, metadata={"min": 0.0})
    seed: int = 42
    # Validation metric that picks the best model and drives early stopping.
    # The *_excluding metrics average over the classes not in metrics.exclude_labels.
    select_metric: Literal["macro_f1", "weighted_f1", "accuracy", "macro_f1_excluding",
                           "micro_f1_excluding"] = "macro_f1"
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    # Also fit the baseline, a linear classifier on the frozen pretrained encoder (sft/baseline.py),
    # for evaluate to show what fine-tuning bought.
    baseline: bool = True
    # `balanced`: n / (classes * count) from the train split; `table`: class_weight_table, 1 elsewhere.
    class_weights: Literal["none", "balanced", "table"] = "none"
    class_weight_table: dict[str, float] = field(default_factory=dict)
    label_smoothing: float = field(default=0.0, metadata={"min": 0.0, "max": 0.5})
    # R-Drop: each example is fed twice and the symmetric KL divergence between the two dropout
    # passes' predictions, times this, joins the loss (sft/losses.py); 0: off. Doubles a step's work.
    rdrop: float = field(default=0.0, metadata={"min": 0.0})
    # Validate, select and save an exponential moving average of the weights with this decay
    # (sft/averaging.py; e.g. 0.999); 0: the weights as trained.
    ema_decay: float = field(default=0.0, metadata={"min": 0.0, "max": 0.9999})
    # Layer-wise learning-rate decay: each encoder layer learns at this times the rate of the
    # layer above it, the embeddings lowest, the pooler and head at the full rate; 1: one rate for all.
    layer_decay: float = field(default=1.0, metadata={"min": 0.1, "max": 1.0})
    # `lazy`: an embedding table moves only in the rows a batch used, their Adam moments (LazyAdam)
    # and their weight decay (TF Addons' AdamW on sparse gradients); `dense`: every row every step.
    embedding_updates: Literal["dense", "lazy"] = "lazy"

    def __post_init__(self):
        if self.batch_size % self.accumulation_steps:
            raise ConfigError(
                f"train.batch_size {self.batch_size} must be a multiple of train.accumulation_steps "
                f"{self.accumulation_steps}: each step's batch is split into that many micro-batches"
            )
        if self.class_weight_table and self.class_weights != "table":
            raise ConfigError("train.class_weight_table is set but train.class_weights is not 'table'")


@dataclass(frozen=True)
class FallbackConfig:
    """Saying "I don't know": predictions less confident than a threshold become `label`."""

    label: str | None = None  # e.g. "out_of_scope"; None: always answer with the top class
    # The threshold is the highest confidence cut that keeps validation in-scope accuracy
    # within this of its best: it rejects as much as that cost allows.
    max_accuracy_drop: float = field(default=0.01, metadata={"min": 0.0, "max": 1.0})
    # A gold label that marks out-of-scope examples, for reporting out-of-scope recall and precision.
    out_of_scope_label: str | None = None


@dataclass(frozen=True)
class MetricsConfig:
    """How runs are scored, besides the standard figures."""

    # Classes left out of the `excluding` averages (evaluate, validation, the *_excluding select
    # metrics): e.g. [neutral], as emotion recognition reports MELD.
    exclude_labels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExportConfig:
    """What `sft export` checks before it writes an export."""

    # An int8 ONNX export is refused when its validation accuracy is more than this below the
    # float32 model's (0.005: half a point).
    max_accuracy_drop: float = field(default=0.005, metadata={"min": 0.0, "max": 1.0})


@dataclass(frozen=True)
class AuditConfig:
    """How `sft audit` gets out-of-fold probabilities: train and validation pooled, cut into
    `folds` stratified parts, each predicted by a model trained on the others."""

    folds: int = field(default=5, metadata={"min": 2, "max": 20})
    # The folds' schedule, shorter than a run's: a fold model only has to rank its held-out
    # labels, not win on test. Early stopping is off; the rest of `train` applies.
    epochs: int = field(default=3, metadata={"min": 1})
    # Where the folds, audit.csv and index.html go; null: `train.run_dir` + "-audit".
    dir: str | None = None


@dataclass(frozen=True)
class RuntimeConfig:
    """How to run, never what to learn: changing hardware must not change the experiment."""

    # auto: TF_CONFIG -> multi_worker, several GPUs -> mirrored, else default (one device).
    strategy: Literal["auto", "default", "mirrored", "multi_worker", "tpu"] = "auto"
    intra_op_threads: int = field(default=0, metadata={"min": 0})  # 0: TensorFlow decides
    inter_op_threads: int = field(default=0, metadata={"min": 0})
    deterministic: bool = False  # tf.config.experimental.enable_op_determinism
    # Variables stay float32; `mixed_*` runs the matmuls of every step and forward pass, the
    # encoder's included, in 16 bits; softmax, normalisation and the loss stay float32.
    # mixed_bfloat16: CPUs with AVX512-BF16/AMX (oneDNN); mixed_float16: NVIDIA GPUs, with
    # dynamic loss scaling. `auto` picks by the hardware (sft/hardware.py), float32 where
    # neither pays. See sft/precision.py.
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"
    # Compile the training step and the forward pass with XLA (tf.function(jit_compile=True)).
    xla: bool = False
    log_every_steps: int = field(default=50, metadata={"min": 1})
    # A checkpoint every this many optimizer steps, besides each epoch end; 0: epoch ends only.
    checkpoint_every_steps: int = field(default=200, metadata={"min": 0})


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fallback: FallbackConfig = field(default_factory=FallbackConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self):
        if self.train.select_metric.endswith("_excluding") and not self.metrics.exclude_labels:
            raise ConfigError(f"train.select_metric {self.train.select_metric} needs metrics.exclude_labels: "
                              "name the classes to leave out, e.g. [neutral]")
        if self.runtime.xla and self.train.embedding_updates == "lazy":
            # Measured with TF 2.21: the compiled row-wise update differs from the plain one by a whole step.
            raise ConfigError("runtime.xla needs train.embedding_updates: dense (XLA miscompiles the lazy "
                              "row-wise embedding update)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file at `path`, then `key.path=value` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    for item in overrides:
        _apply_override(raw, item)
    return build(Config, raw)


def config_from_dict(raw: dict[str, Any]) -> Config:
    return build(Config, raw)


class _BoundedLoader(yaml.SafeLoader):
    """`yaml.safe_load` that refuses more than MAX_ALIASES aliases.

    Aliases share one object, so nine levels of nine cost nothing to load, but
    anything that walks the value (a message quoting it, a copy) walks 9**9
    items; a config has no need for more than a handful.
    """

    MAX_ALIASES = 100

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.MarkedYAMLError(problem=f"more than {self.MAX_ALIASES} aliases (*name)",
                                           problem_mark=mark)
        return super().compose_node(parent, index)


def _safe_load(text: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a folder: pass a YAML file to --config (see configs/)")
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found: pass an existing YAML file to --config")
    try:
        raw = _safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(f"config file '{path}' is not valid YAML ({where}): {e.problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file '{path}' is not valid YAML: {e}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of sections, found {type(raw).__name__}")
    return raw


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}' must look like section.key=value, e.g. train.epochs=2")
    try:
        value = _safe_load(text)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"override '{item}': the value is not valid YAML ({problem}); "
                          "quote it to mean a string: key='\"text\"'") from None
    *parents, leaf = key.strip().split(".")
    node = raw
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{item}': '{'.'.join(parents[: i + 1])}' is not a section")
        node = child
    node[leaf] = value


def build(cls: type, raw: Any, path: str = ""):
    """Build dataclass `cls` from `raw`, refusing unknown keys and wrong types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, found {_describe(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(
                f"unknown config key '{_join(path, key if isinstance(key, str) else _SHORT.repr(key))}' "
                f"(valid keys here: {', '.join(fields)})"
            )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        key = _join(path, name)
        values[name] = _coerce(hints[name], value, key)
        _check_range(fields[name], values[name], key)
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, {} if value is None else value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {_SHORT.repr(value)} is not a valid choice "
                              f"(choose one of: {', '.join(map(str, args))})")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, found {_describe(value)}")
        return {_coerce(args[0], k, f"{key} key"): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, found {_describe(value)}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, found {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, found {_describe(value)}")
        return value
    if hint is float:
        # YAML 1.1 reads `5e-5` (no dot) as a string; accept what Python reads as a number.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, found {_describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, found {_describe(value)}")
        return value
    raise TypeError(f"config type {hint!r} of {key} is not supported")  # a bug, not user input


def _check_range(f: dataclasses.Field, value: Any, key: str) -> None:
    low, high = f.metadata.get("min"), f.metadata.get("max")
    if value is None:
        return
    if low is not None and value < low or high is not None and value > high:
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{key}: {value!r} is out of range (must be {bounds})")


_SHORT = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 80, 80


def _describe(value: Any) -> str:
    """A value a user wrote, shortened: a message never expands what the YAML nests."""
    return "nothing" if value is None else f"{type(value).__name__} {_SHORT.repr(value)}"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
