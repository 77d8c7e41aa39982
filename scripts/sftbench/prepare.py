"""`bench.py prepare`: time `sft prepare` on synthetic dialogue logs.

A CSV of ten-turn dialogues (random words, 20 labels, some HTML, Windows-1252
controls, zero-width spaces, repeated short replies) in a temporary folder,
prepared in-process with two turns of speaker-prefixed context, as
configs/meld.yaml does. Lengths are counted in word pieces when the bundled
MiniLM vocabulary is already in the cache, as `sft prepare` would. Reading the
CSV is part of the time; generating it is not.
"""

from __future__ import annotations

import csv
import os
import random
import sys
import tempfile
import time
from pathlib import Path

TURNS = 10
NOISE = ["<b>", "</b>", "&amp;", "\u0092", "\u200b", "  ", "\n"]
REPLIES = ["Yeah.", "OK", "Thanks!", "What?", "No."]


def write_rows(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    labels = [f"intent_{i:02d}" for i in range(20)]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["dialogue_id", "turn", "speaker", "text", "label"])
        for i in range(rows):
            if rng.random() < 0.05:
                text = rng.choice(REPLIES)
            else:
                text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 25)))
                if rng.random() < 0.2:
                    at = rng.randrange(len(text) + 1)
                    text = text[:at] + rng.choice(NOISE) + text[at:]
            writer.writerow([f"d{i // TURNS}", i % TURNS, "user" if i % 2 else "agent", text, rng.choice(labels)])


def run(rows: int, seed: int) -> dict:
    from sft.config import Columns, DataConfig, ModelConfig
    from sft.data.prepare import format_summary, prepare
    from sft.hub.resolve import local_vocab

    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "dialogues.csv"
        write_rows(raw, rows, seed)
        config = DataConfig(files=[str(raw)], columns=Columns(dialogue_id="dialogue_id", turn="turn", speaker="speaker"),
                            context_turns=2, context_speaker=True)
        vocab = local_vocab(ModelConfig())
        started = time.perf_counter()
        report = prepare(config, Path(scratch) / "prepared", vocab=vocab)
        seconds = time.perf_counter() - started
    print(format_summary(report, "(temporary folder)"), file=sys.stderr)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{report['rows_read']} rows in {seconds:.1f} s: {report['rows_read'] / seconds:,.0f} rows/s "
          f"(one process, {cores} cores visible; lengths in {report['lengths']['unit']})", file=sys.stderr)
    return {"rows": report["rows_read"], "seconds": seconds, "prepare_rows_per_s": report["rows_read"] / seconds,
            "length_unit": report["lengths"]["unit"]}
