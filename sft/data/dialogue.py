"""Dialogues: rows grouped by dialogue id, ordered by turn, each utterance given the turns before it."""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sft.config import CleanConfig, DataConfig
from sft.data.clean import clean_text
from sft.data.example import Example
from sft.data.labels import label_normalizer
from sft.data.read import RawRow, RowProblems


@dataclass(frozen=True)
class Utterance:
    """A labelled example and what it was before cleaning."""

    example: Example
    # The raw text and the raw (speaker, text) of each context turn: equal tuples are exact duplicates.
    raw: tuple


def dialogue_examples(rows: Iterable[RawRow], config: DataConfig, problems: RowProblems) -> list[Utterance]:
    """Clean each row; order each dialogue by turn; give each labelled utterance up to
    `config.context_turns` previous turns, oldest first.

    A row without a dialogue id stands alone. A row whose text is empty after
    cleaning is dropped; a row without a label is no example but still context
    for the turns after it (agent turns in a log labelled for user intents).
    With `config.context_speaker`, context turns read "Speaker: text".
    """
    columns = config.columns
    to_class = label_normalizer(config.labels)
    dialogues: dict[str | None, list[tuple[RawRow, str]]] = defaultdict(list)
    alone: list[tuple[RawRow, str]] = []
    for row in rows:
        text = clean_text(row.text, config.clean)
        if not text:
            problems.add("empty_text", f"{row.source}: column '{columns.text}' is empty after cleaning; "
                                       "expected an utterance (the row is dropped)")
            continue
        dialogue_id = (row.dialogue_id or "").strip()
        (dialogues[dialogue_id] if dialogue_id else alone).append((row, text))

    out = []
    for dialogue_id, turns in [*dialogues.items(), *((None, [turn]) for turn in alone)]:
        if dialogue_id is not None and columns.turn is not None:
            turns.sort(key=lambda turn: _turn_order(turn[0].turn))  # stable: equal turns keep file order
        history: list[tuple[RawRow, str]] = []  # (row, the turn as context reads it)
        for row, text in turns:
            label = to_class(row.label)
            if not label:
                problems.add("empty_label", f"{row.source}: column '{columns.label}' is empty; "
                                            "expected a label (the row is kept only as context)")
            else:
                previous = history[-config.context_turns:] if config.context_turns else []
                raw = (row.text, *((r.speaker, r.text) for r, _ in previous))
                example = Example(text, label, dialogue_id, [turn for _, turn in previous], row.source)
                out.append(Utterance(example, raw))
            history.append((row, _speaker_prefix(row.speaker, config.clean, config.context_speaker) + text))
    return out


def context_turn(text: str, speaker: str | None, config: DataConfig) -> str:
    """A previous turn as the model reads it in context: cleaned, "Speaker: text" with
    `data.context_speaker`. `sft prepare` writes turns this way; `sft serve` builds a
    request's turns with it. A turn empty after cleaning is no turn (""): prepare drops such rows."""
    text = clean_text(text, config.clean)
    return _speaker_prefix(speaker, config.clean, config.context_speaker) + text if text else ""


def context_segment(turns: Sequence[str], context_turns: int) -> str:
    """The second segment of the model's input: the last `context_turns` turns, oldest first."""
    return " ".join(turns[-context_turns:]) if context_turns else ""


@functools.lru_cache(maxsize=4096)  # few speakers, many turns
def _speaker_prefix(speaker: str | None, clean: CleanConfig, with_speaker: bool) -> str:
    name = clean_text(speaker, clean) if with_speaker and speaker else ""
    return f"{name}: " if name else ""


def _turn_order(turn: str | None):
    turn = (turn or "").strip()
    try:
        number = float(turn)
    except ValueError:
        number = math.nan
    if math.isnan(number):
        return (1, 0.0, turn)  # non-numeric turns sort after numeric ones, as text
    return (0, number, "")
