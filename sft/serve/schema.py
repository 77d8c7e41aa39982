"""What a request must look like. Each problem is a `BadRequest` that names it: the client gets
a 4xx and a JSON body saying what to fix, and the server goes on answering others."""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.requests import ClientDisconnect

from sft.config import DataConfig
from sft.data.clean import clean_text
from sft.data.dialogue import context_segment, context_turn


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class Limits:
    """What one request may hold; more is refused, never half-answered."""

    max_texts: int = 256  # texts (or instances) in one request
    max_text_bytes: int = 4096  # UTF-8 bytes of one text or context turn
    max_body_bytes: int = 1 << 20  # the whole body


async def read_json(request, limits: Limits):
    """The request's body as JSON: 413 over `max_body_bytes` (whether it says its length or not), 400 if not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise BadRequest(f"body of {declared} bytes is over the limit of {limits.max_body_bytes}", 413)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_body_bytes:
                raise BadRequest(f"body is over the limit of {limits.max_body_bytes} bytes", 413)
    except ClientDisconnect:
        raise BadRequest("the client went away before sending the whole body") from None
    if not body:
        raise BadRequest("body is empty: expected a JSON object")
    try:
        return json.loads(body.decode("utf-8"))  # JSON is UTF-8 (RFC 8259): no guessing at UTF-16
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8 text: expected a JSON object") from None
    except RecursionError:
        raise BadRequest("body is JSON nested too deeply") from None
    except ValueError as e:
        raise BadRequest(f"body is not JSON ({e})") from None


@dataclass(frozen=True)
class ClassifyRequest:
    texts: list[str]  # cleaned as the run's training data was
    contexts: list[str]  # each text's context segment, "" where there is none
    top_k: int


def parse_classify(body, limits: Limits, data: DataConfig, classes: int) -> ClassifyRequest:
    """`{"texts": [...], "contexts": [[turn, ...], ...]?, "top_k": k?}`; a turn is a string or
    `{"text": ..., "speaker": ...}`, oldest first."""
    _object(body, "body", {"texts", "contexts", "top_k"})
    if "texts" not in body:
        raise BadRequest('body has no "texts": expected {"texts": ["a text", ...]}')
    texts = _list(body["texts"], "texts", limits)
    cleaned = []
    for i, text in enumerate(texts):
        cleaned.append(clean_text(_text(text, f"texts[{i}]", limits), data.clean))
        if not cleaned[-1]:
            raise BadRequest(f"texts[{i}] is empty after cleaning: expected words to classify")
    contexts = [""] * len(texts)
    if body.get("contexts") is not None:
        given = body["contexts"]
        if not isinstance(given, list) or len(given) != len(texts):
            raise BadRequest(f'"contexts" must be a list with one list of previous turns a text ({len(texts)})')
        contexts = [_context(turns, f"contexts[{i}]", limits, data) for i, turns in enumerate(given)]
    top_k = body.get("top_k", 1)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= classes:
        raise BadRequest(f'"top_k" must be a whole number from 1 to {classes}, the number of classes')
    return ClassifyRequest(cleaned, contexts, top_k)


def _context(turns, where: str, limits: Limits, data: DataConfig) -> str:
    if turns is None:
        return ""
    if not isinstance(turns, list):
        raise BadRequest(f"{where} must be a list of previous turns, oldest first")
    given = []
    for j, turn in enumerate(turns):
        if isinstance(turn, dict):
            _object(turn, f"{where}[{j}]", {"text", "speaker"})
            speaker = turn.get("speaker")
            if speaker is not None:
                _text(speaker, f"{where}[{j}].speaker", limits)
            given.append((_text(turn.get("text"), f"{where}[{j}].text", limits), speaker))
        else:
            given.append((_text(turn, f"{where}[{j}]", limits), None))
    # Newest first, and only until the model's turns are found: older ones are never read.
    kept = []
    for text, speaker in reversed(given):
        if len(kept) == data.context_turns:
            break
        turn = context_turn(text, speaker, data)
        if turn:  # empty after cleaning: no turn, as prepare drops such rows
            kept.append(turn)
    return context_segment(kept[::-1], data.context_turns)


@dataclass(frozen=True)
class PredictRequest:
    """TF Serving's `:predict`: one list of values for each input of the signature."""

    signature: str
    columns: dict[str, list]
    rows: bool  # asked with "instances" (answer "predictions"), or with "inputs" (answer "outputs")

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))


def parse_predict(body, limits: Limits, signatures: dict[str, dict[str, str]]) -> PredictRequest:
    """`{"signature_name"?, "instances": [...]}` (row format) or `{"signature_name"?, "inputs": ...}`
    (columnar), as TF Serving's REST API takes them. `signatures`: name -> {input: "string" | "int32"}."""
    _object(body, "body", {"signature_name", "instances", "inputs"})
    name = body.get("signature_name", "serving_default")
    if not isinstance(name, str) or name not in signatures:
        raise BadRequest(f"signature_name '{str(name)[:100]}' is not in the model; it has {', '.join(sorted(signatures))}")
    specs = signatures[name]
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest('body needs "instances" (a list, one item an example) or "inputs", not both or neither')
    if "instances" in body:
        instances = _list(body["instances"], "instances", limits)
        if len(specs) == 1:
            (only,) = specs
            values = [x[only] if isinstance(x, dict) and set(x) == {only} else x for x in instances]
            columns = {only: values}
        else:
            for i, x in enumerate(instances):
                if not isinstance(x, dict) or set(x) != set(specs):
                    raise BadRequest(f"instances[{i}] must be an object with the keys {', '.join(specs)}")
            columns = {key: [x[key] for x in instances] for key in specs}
    else:
        given = body["inputs"]
        if len(specs) == 1 and isinstance(given, list):
            given = {next(iter(specs)): given}
        if not isinstance(given, dict) or set(given) != set(specs):
            raise BadRequest(f'"inputs" must be an object with the keys {", ".join(specs)}, each a list')
        columns = {key: _list(given[key], f"inputs.{key}", limits) for key in specs}
        if len({len(v) for v in columns.values()}) > 1:
            raise BadRequest('every list in "inputs" must be as long as the others')
    rows = "instances" in body
    for key, dtype in specs.items():
        if dtype == "string":
            for i, value in enumerate(columns[key]):
                _text(value, f"instances[{i}]" + (f".{key}" if len(specs) > 1 else "") if rows else f"inputs.{key}[{i}]",
                      limits)
        elif not all(isinstance(row, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in row)
                     for row in columns[key]):
            raise BadRequest(f"{key} must be a list of whole numbers (token ids) for each example")
    lengths = {len(row) for key, dtype in specs.items() if dtype != "string" for row in columns[key]}
    if len(lengths) > 1:
        raise BadRequest(f"{', '.join(k for k, d in specs.items() if d != 'string')}: every example must have the "
                         "same number of token ids in each (pad them to the longest)")
    return PredictRequest(name, columns, rows)


def _object(value, where: str, keys: set[str]) -> None:
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON object, not {_kind(value)}")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise BadRequest(f"{where} has the unknown field '{unknown[0][:100]}'; expected {', '.join(sorted(keys))}")


def _list(value, where: str, limits: Limits) -> list:
    if not isinstance(value, list):
        raise BadRequest(f'"{where}" must be a list, not {_kind(value)}')
    if not value:
        raise BadRequest(f'"{where}" is empty: send at least one')
    if len(value) > limits.max_texts:
        raise BadRequest(f'"{where}" holds {len(value)} items; the limit is {limits.max_texts} a request', 413)
    return value


def _text(value, where: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a string, not {_kind(value)}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequest(f"{where} is not valid Unicode (a lone surrogate \\u escape)") from None
    if size > limits.max_text_bytes:
        raise BadRequest(f"{where} is {size} bytes long; the limit is {limits.max_text_bytes}", 413)
    return value


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)
