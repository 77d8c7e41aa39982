"""Shared fixtures: an isolated model cache and the tiny TF Hub-format BERT."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def isolated_caches(tmp_path_factory):
    """Bundled models and TF Hub downloads go to a fresh folder, never the user's cache."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("cache")
    mp.setenv("SFT_CACHE_DIR", str(root / "sft"))
    mp.setenv("TFHUB_CACHE_DIR", str(root / "tfhub"))
    yield root
    mp.undo()


@pytest.fixture(autouse=True)
def float32_after_each_test(monkeypatch):
    """A run under `runtime.precision: auto` switches a process-wide graph rewrite on where the CPU
    has bfloat16 units; the next test must not inherit it."""
    for name in ("DENYLIST_ADD", "INFERLIST_REMOVE"):  # mixed_bfloat16 extends them
        monkeypatch.delenv(f"TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_{name}", raising=False)
    yield
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        tf.config.optimizer.set_experimental_options(
            {"auto_mixed_precision_onednn_bfloat16": False, "auto_mixed_precision": False})


@pytest.fixture(scope="session")
def tiny_hub(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer, hidden-32 encoder and its preprocessor, TF Hub format."""
    from sft.hub.export import export_tiny

    return export_tiny(tmp_path_factory.mktemp("hub") / "tiny")


@pytest.fixture(scope="session")
def calm_hub(tmp_path_factory) -> Path:
    """The tiny encoder without dropout: runs that differ only in batching or compilation must agree."""
    from sft.hub.encoder import BertConfig
    from sft.hub.export import TINY_CONFIG, export_random, tiny_vocab

    folder = tmp_path_factory.mktemp("calm")
    (folder / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n")
    config = BertConfig(vocab_size=len(tiny_vocab()), dropout=0.0, attention_dropout=0.0, **TINY_CONFIG)
    return export_random(config, folder / "vocab.txt", folder / "hub")


INTENTS = {
    "greeting": ["hi", "hello there", "hey good morning", "hello i need help", "hi anyone there"],
    "lost_card": ["i lost my card", "my card was stolen", "i can not find my card", "block my card please",
                  "someone took my credit card"],
    "balance": ["what is my balance", "how much money do i have", "show my account balance",
                "check my balance please", "balance of my savings account"],
}


@pytest.fixture(scope="module")
def tiny(calm_hub):
    """The tiny classifier (without dropout: XLA draws other random masks), its starting weights,
    its preprocessor and a few encoded examples."""
    from sft import inputs
    from sft.config import ModelConfig
    from sft.data.example import Example
    from sft.hub import resolve
    from sft.model import build_classifier

    preprocessor = resolve.load(str(calm_hub / "preprocessor"), "preprocessor")
    examples = [Example(text, label) for label, texts in INTENTS.items() for text in texts]
    split = inputs.encode(preprocessor, examples, {label: i for i, label in enumerate(sorted(INTENTS))})
    model = build_classifier(ModelConfig(encoder=str(calm_hub / "encoder"), dropout=0.0), len(INTENTS), seed=0)
    return model, model.get_weights(), preprocessor, split


def train_three_steps(tiny, wrap=lambda optimizer: optimizer, class_weight: float = 1.0, xla: bool = False,
                      after_step=None, **train):
    """Weights after three optimizer steps of 5 examples from the same start, and the optimizer;
    `after_step(train_step)` is called after each; `train`: TrainConfig fields besides the batch
    size and learning rate."""
    import numpy as np
    import tensorflow as tf
    from sft import inputs
    from sft.config import TrainConfig
    from sft.optim import build_optimizer
    from sft.train import TrainStep

    model, start, preprocessor, split = tiny
    model.set_weights(start)
    config = TrainConfig(batch_size=5, learning_rate=1e-3, **train)
    optimizer = wrap(build_optimizer(config, 3, model.trainable_variables))
    step = TrainStep(model, optimizer, tf.distribute.get_strategy(), config,
                     np.full(len(INTENTS), class_weight, np.float32), xla=xla)
    plan = inputs.plan_epoch(split.lengths, 5, 1, seed=0, epoch=0)
    dataset = inputs.train_dataset(split, preprocessor, plan, 32).take(3)
    function = step.function(True, dataset.element_spec)
    for batch in dataset:
        function(batch)
        if after_step:
            after_step(step)
    return [w.numpy() for w in model.trainable_variables], optimizer


def write_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def dialogue_rows(dialogues: int = 12) -> list[dict]:
    """Three-turn dialogues: a greeting, then a lost card or a balance question, then a greeting."""
    rows = []
    for d in range(dialogues):
        middle = "lost_card" if d % 2 else "balance"
        for turn, label in enumerate(["greeting", middle, "greeting"], 1):
            text = INTENTS[label][(d + turn) % 5] + ("" if turn < 3 else f" bye {d}")
            rows.append({"dialogue_id": f"d{d}", "turn": turn, "speaker": "user", "text": text, "label": label})
    return rows


@pytest.fixture
def dialogue_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "dialogues.csv", dialogue_rows())


def sft_cli(*args, code: int = 0, input: str | bytes | None = None):
    """`sft ARGS` in this process, stdout and stderr apart; checks the exit code."""
    from click.testing import CliRunner

    from sft.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    assert result.exit_code == code, result.stderr + repr(result.exception)
    return result


def write_project(root: Path, encoder: Path, dialogues: int, train: str, extra: str = "",
                  validation_size: float = 0.2, test_size: float = 0.2, runtime: str = "", data: str = "") -> Path:
    """Dialogue CSV, config (`train` and `extra` as YAML lines, `runtime` and `data` as keys of those
    sections) and prepared data in `root/data`; the config path.

    The runs are float32 whatever the CPU, so that no test's figures depend on the machine;
    `runtime.precision: auto` is tested on its own (test_precision.py).
    """
    write_csv(root / "d.csv", dialogue_rows(dialogues))
    config = root / "c.yaml"
    config.write_text(
        f"data: {{files: [{root / 'd.csv'}], validation_size: {validation_size}, test_size: {test_size}, "
        f"prepared_dir: {root / 'data'}, {data + ', ' if data else ''}\n"
        "       columns: {dialogue_id: dialogue_id, turn: turn, speaker: speaker}}\n"
        f"model: {{encoder: {encoder}, max_seq_length: 32}}\n"
        f"train: {train}\nruntime: {{precision: float32, {runtime}}}\n{extra}"
    )
    sft_cli("prepare", "--config", config)
    return config


@contextlib.contextmanager
def browser_page(path: Path):
    """The page at `path` in headless Chromium, with the console errors and the requests it made:
    Playwright driving Debian's chromium, or a skip that says which of the two is missing."""
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (the test extra)")
    executable = os.environ.get("SFT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not executable:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)")
    problems, requests = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        yield page, problems, requests
        browser.close()
