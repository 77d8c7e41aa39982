"""`sft serve`: a trained run answers a chatbot over HTTP as `sft predict` answers on the command line,
speaks TF Serving's REST API, says what is wrong with a bad request, and stops cleanly."""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from sft.data.example import Example, read_jsonl
from tests.conftest import sft_cli as run, write_project

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_hub):
    """A tiny run that reads two turns of context and has an "I don't know" fallback, and its export."""
    root = tmp_path_factory.mktemp("serve")
    train = f"{{run_dir: {root / 'run'}, epochs: 3, batch_size: 8, learning_rate: 1.0e-3}}"
    config = write_project(root, tiny_hub / "encoder", 24, train,
                           "fallback: {label: dont_know, max_accuracy_drop: 0.05}\n",
                           data="context_turns: 2, context_speaker: true")
    run("train", "--config", config)
    from sft.export import export_run
    from sft.rundir import RunDir

    export_run(RunDir(root / "run"))
    return root


@pytest.fixture(scope="module")
def trained(project):
    from sft.rundir import RunDir
    from sft.trained import load_trained

    return load_trained(RunDir(project / "run"))


def make_app(load, **options):
    from sft.serve.app import ServeOptions, create_app
    from sft.serve.schema import Limits

    limits = {k: options.pop(k) for k in ("max_texts", "max_text_bytes", "max_body_bytes") if k in options}
    return create_app(load, ServeOptions("intents", **options, limits=Limits(**limits)))


@pytest.fixture(scope="module")
def client(project):
    from starlette.testclient import TestClient

    from sft.exported import ExportedModel

    with TestClient(make_app(lambda: ExportedModel(project / "run" / "export" / "best"), max_wait_ms=2)) as client:
        wait_ready(client.get)
        yield client


def wait_ready(get, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = get("/readyz")
        if response.status_code == 200:
            return
        assert response.json()["status"] == "loading", response.json()
        time.sleep(0.1)
    raise AssertionError("the model did not get ready")


def test_answers_are_sft_predicts(client, trained, project):
    examples = read_jsonl(project / "data" / "test.jsonl")
    from sft.predict import predict_examples

    expected = predict_examples(trained, examples, top_k=3)
    contexts = [[{"speaker": turn.split(": ", 1)[0], "text": turn.split(": ", 1)[1]} for turn in e.context]
                for e in examples]
    response = client.post("/v1/classify", json={"texts": [e.text for e in examples], "contexts": contexts, "top_k": 3})
    assert response.status_code == 200
    answers = response.json()["answers"]
    assert [a["label"] for a in answers] == [e["label"] for e in expected]
    assert [a["fallback"] for a in answers] == [e["fallback"] for e in expected]
    assert [a["confidence"] for a in answers] == pytest.approx([e["confidence"] for e in expected], abs=1e-5)
    assert [[t["label"] for t in a["top_k"]] for a in answers] == [[t["label"] for t in e["top_k"]] for e in expected]
    assert any(e.context for e in examples), "the test split has context, or this test shows nothing"


def test_only_the_turns_the_model_reads_are_cleaned():
    from sft.config import DataConfig
    from sft.serve.schema import Limits, parse_classify

    data = DataConfig(context_turns=2, context_speaker=True)
    turns = ["<b>oldest</b>", "older", "  ", {"speaker": "bot", "text": "newest"}]
    asked = parse_classify({"texts": ["hi"], "contexts": [turns]}, Limits(), data, classes=3)
    assert asked.contexts == ["older bot: newest"]
    nothing = parse_classify({"texts": ["hi"], "contexts": [turns]}, Limits(), DataConfig(), classes=3)
    assert nothing.contexts == [""]  # a model trained without context reads none


def test_context_is_built_as_prepare_builds_it(client, trained):
    """Turns given as strings or as {speaker, text}, older than the model reads, or empty after cleaning."""
    from sft.predict import predict_examples

    turns = [{"speaker": "user", "text": "hi there"}, "  ", {"speaker": "user", "text": "my card is gone"},
             {"speaker": "agent", "text": "<b>sorry</b> to hear that"}]
    body = {"texts": ["what now"], "contexts": [turns]}
    served = client.post("/v1/classify", json=body).json()["answers"][0]
    # Two turns of context, the newest; the blank one is no turn; the agent's HTML is cleaned.
    example = Example("what now", "", context=["user: my card is gone", "agent: sorry to hear that"])
    (expected,) = predict_examples(trained, [example])
    assert served["label"] == expected["label"]
    assert served["confidence"] == pytest.approx(expected["confidence"], abs=1e-5)
    alone = client.post("/v1/classify", json={"texts": ["what now"]}).json()["answers"][0]
    assert alone["confidence"] != pytest.approx(served["confidence"], abs=1e-6)


def test_tf_serving_rest_api_answers_as_the_export_does(client, project):
    import tensorflow as tf

    texts = ["hello there", "I lost my card"]
    saved = tf.saved_model.load(str(project / "run" / "export" / "best"))
    direct = saved.signatures["serving_default"](text=tf.constant(texts))
    rows = client.post("/v1/models/intents:predict", json={"instances": texts}).json()["predictions"]
    assert [r["label"] for r in rows] == [x.decode() for x in direct["label"].numpy()]
    assert [r["class_id"] for r in rows] == direct["class_id"].numpy().tolist()
    np.testing.assert_allclose([r["probabilities"] for r in rows], direct["probabilities"].numpy(), atol=1e-6)
    columns = client.post("/v1/models/intents/versions/1:predict", json={"inputs": {"text": texts}}).json()["outputs"]
    assert columns["label"] == [r["label"] for r in rows]
    context = client.post("/v1/models/intents:predict", json={
        "signature_name": "classify_dialogue", "instances": [{"text": t, "context": ""} for t in texts]}).json()
    assert [r["label"] for r in context["predictions"]] == [r["label"] for r in rows]


def test_a_bfloat16_export_freezes_a_signature_on_its_first_call_and_only_those_called(project):
    from sft.exported import ExportedModel

    model = ExportedModel(project / "run" / "export" / "best", bfloat16=True)
    assert model._callable == {}  # a frozen copy of the graph costs memory: none until called
    probabilities = model.probabilities(["hello there"], [""])
    assert set(model._callable) == {"classify_dialogue"}  # the project's model reads context
    ids = {"input_word_ids": [[2, 7, 3]], "input_mask": [[1, 1, 1]], "input_type_ids": [[0, 0, 0]]}
    outputs = model.run_signature("classify_ids", ids)
    assert set(model._callable) == {"classify_dialogue", "classify_ids"}
    assert outputs["probabilities"].shape == probabilities.shape


def test_tf_serving_status_and_metadata(client):
    status = client.get("/v1/models/intents").json()
    assert status == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                "status": {"error_code": "OK", "error_message": ""}}]}
    signatures = client.get("/v1/models/intents/metadata").json()["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {"serving_default", "classify_dialogue", "classify_ids"}
    assert signatures["serving_default"]["inputs"]["text"]["dtype"] == "DT_STRING"
    assert signatures["classify_ids"]["outputs"]["probabilities"]["dtype"] == "DT_FLOAT"


BAD_REQUESTS = [
    # (method, path, body, status, what the error names)
    ("POST", "/v1/classify", b"{not json", 400, "not JSON"),
    ("POST", "/v1/classify", b"", 400, "empty"),
    ("POST", "/v1/classify", b"\xff\xfe", 400, "not UTF-8"),
    ("POST", "/v1/classify", [], 400, "must be a JSON object"),
    ("POST", "/v1/classify", {"text": ["hi"]}, 400, "unknown field 'text'"),
    ("POST", "/v1/classify", {"texts": "hi"}, 400, '"texts" must be a list'),
    ("POST", "/v1/classify", {"texts": []}, 400, '"texts" is empty'),
    ("POST", "/v1/classify", {"texts": [1]}, 400, "texts[0] must be a string, not a number"),
    ("POST", "/v1/classify", {"texts": ["<b></b>"]}, 400, "texts[0] is empty after cleaning"),
    ("POST", "/v1/classify", {"texts": ["ok", "\ud800"]}, 400, "texts[1] is not valid Unicode"),
    ("POST", "/v1/classify", {"texts": ["hi"] * 9}, 413, "the limit is 8"),
    ("POST", "/v1/classify", {"texts": ["x" * 101]}, 413, "texts[0] is 101 bytes long; the limit is 100"),
    ("POST", "/v1/classify", {"texts": ["hi"], "top_k": 0}, 400, '"top_k" must be a whole number'),
    ("POST", "/v1/classify", {"texts": ["hi"], "top_k": True}, 400, '"top_k" must be a whole number'),
    ("POST", "/v1/classify", {"texts": ["hi"], "contexts": []}, 400, "one list of previous turns a text"),
    ("POST", "/v1/classify", {"texts": ["hi"], "contexts": [[{"who": "x"}]]}, 400, "unknown field 'who'"),
    ("POST", "/v1/classify", {"texts": ["hi"], "contexts": [[7]]}, 400, "contexts[0][0] must be a string"),
    ("POST", "/v1/classify", {"texts": ["a" * 90] * 3}, 413, "over the limit of 200"),
    ("GET", "/v1/classify", None, 405, "GET is not allowed on /v1/classify; use POST"),
    ("POST", "/v1/models/other:predict", {"instances": ["hi"]}, 404, "model 'other' is not served here"),
    ("POST", "/v1/models/intents/versions/7:predict", {"instances": ["hi"]}, 404, "no version '7'"),
    ("POST", "/v1/models/intents:classify", {"examples": []}, 404, "':classify' is not served"),
    ("GET", "/v1/models/intents:predict", None, 405, "use POST"),
    ("POST", "/v1/models/intents:predict", {"instances": ["hi"], "inputs": ["hi"]}, 400, "not both"),
    ("POST", "/v1/models/intents:predict", {"signature_name": "nope", "instances": ["hi"]}, 400, "'nope' is not in"),
    ("POST", "/v1/models/intents:predict", {"instances": [{"txt": "hi"}]}, 400, "must be a string, not an object"),
    ("POST", "/v1/models/intents:predict", {"signature_name": "classify_ids", "instances": [
        {"input_word_ids": [1, 2], "input_mask": [1, 1], "input_type_ids": [0]}]}, 400, "same number of token ids"),
    ("POST", "/v1/models/intents:predict", {"signature_name": "classify_ids", "instances": [
        {"input_word_ids": [2, 10 ** 6], "input_mask": [1, 1], "input_type_ids": [0, 0]}]}, 400,
     "the model refused the inputs: indices[0,1] = 1000000 is not in [0, "),
    ("DELETE", "/v1/models/intents", None, 405, "DELETE is not allowed on /v1/models/intents; use GET"),
    ("GET", "/v2/anything", None, 404, "no such endpoint: /v2/anything"),
    ("POST", "/v1/models/intents:predict", {"signature_name": ["x"], "instances": ["hi"]}, 400, "is not in the model"),
]


@pytest.fixture(scope="module")
def strict_client(project):
    from starlette.testclient import TestClient

    from sft.exported import ExportedModel

    app = make_app(lambda: ExportedModel(project / "run" / "export" / "best"),
                   max_texts=8, max_text_bytes=100, max_body_bytes=200)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client.get)
        yield client


@pytest.mark.parametrize("method, path, body, status, message", BAD_REQUESTS,
                         ids=[f"{i}-{m}" for i, (_, _, _, _, m) in enumerate(BAD_REQUESTS)])
def test_a_bad_request_gets_a_4xx_that_names_the_problem(strict_client, method, path, body, status, message):
    content = body if isinstance(body, bytes) or body is None else json.dumps(body)
    response = strict_client.request(method, path, content=content)
    assert response.status_code == status
    assert message in response.json()["error"]
    # ...and the server goes on answering.
    assert strict_client.post("/v1/classify", json={"texts": ["hello"]}).status_code == 200


def test_json_nested_past_pythons_recursion_limit_is_a_400(client):
    response = client.post("/v1/classify", content=b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]


def test_a_body_without_a_length_is_cut_off_at_the_limit(strict_client):
    chunks = (b'{"texts": ["' + b"a" * 50 + b'"' for _ in range(10))
    response = strict_client.post("/v1/classify", content=chunks)  # sent chunked: no Content-Length
    assert response.status_code == 413 and "over the limit of 200 bytes" in response.json()["error"]


def test_health_readiness_and_metrics(project):
    from starlette.testclient import TestClient

    from sft.exported import ExportedModel

    release = threading.Event()

    def slow_load():
        release.wait(60)
        return ExportedModel(project / "run" / "export" / "best")

    with TestClient(make_app(slow_load)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").status_code == 503
        loading = client.post("/v1/classify", json={"texts": ["hi"]})
        assert loading.status_code == 503 and "loading" in loading.json()["error"]
        assert client.get("/v1/models/intents").json()["model_version_status"][0]["state"] == "LOADING"
        release.set()
        wait_ready(client.get)
        client.post("/v1/classify", json={"texts": ["hi", "hello"]})
        client.post("/v1/classify", json={"texts": []})
        metrics = client.get("/metrics").text
    assert 'sft_requests_total{code="200",endpoint="/v1/classify"} 1.0' in metrics
    assert 'sft_requests_total{code="400",endpoint="/v1/classify"} 1.0' in metrics
    assert 'sft_requests_total{code="503",endpoint="/v1/classify"} 1.0' in metrics
    assert 'sft_request_duration_seconds_count{endpoint="/v1/classify"} 3.0' in metrics
    assert "sft_batch_size_sum 2.0" in metrics and "sft_model_ready 1.0" in metrics


def test_once_ready_what_loading_made_is_out_of_the_collectors_sight(client):
    import gc

    assert gc.get_freeze_count() > 100_000  # TensorFlow and the model: not scanned by every full collection


def test_a_model_that_fails_to_load_is_reported_not_served(tmp_path):
    from starlette.testclient import TestClient

    from sft.exported import ExportedModel

    with TestClient(make_app(lambda: ExportedModel(tmp_path))) as client:
        for _ in range(100):
            if client.get("/readyz").json()["status"] != "loading":
                break
            time.sleep(0.05)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "is not a folder written by `sft export`" in ready.json()["error"]
        assert client.post("/v1/classify", json={"texts": ["hi"]}).status_code == 503


class CountingModel:
    """Stands in for the export: probabilities from the text's length, and every call remembered."""

    def __init__(self, seconds: float = 0.02):
        self.calls, self.seconds = [], seconds

    def __call__(self, texts, contexts):
        self.calls.append(list(texts))
        time.sleep(self.seconds)
        return np.array([[len(t), 1.0] for t in texts], np.float32)


def started_batcher(model, **options):
    """A MicroBatcher running `model` (inside the event loop)."""
    from sft.serve.batcher import MicroBatcher

    batcher = MicroBatcher(**options)
    batcher.model = model
    batcher.start()
    return batcher


def test_requests_arriving_together_share_a_batch_and_get_their_own_answers():
    async def scenario():
        model = CountingModel()
        batcher = started_batcher(model, max_batch=8, max_wait=0.05)
        futures = [batcher.submit(["x" * n], [""]) for n in range(1, 21)]
        answers = await asyncio.gather(*futures)
        await batcher.stop()
        return model.calls, answers

    calls, answers = asyncio.run(scenario())
    assert [a[0, 0] for a in answers] == list(range(1, 21))  # each request its own row, in order
    assert sum(len(c) for c in calls) == 20 and len(calls) <= 6  # 20 requests, a few model calls
    assert all(len(c) <= 8 for c in calls)


def test_a_lone_request_does_not_wait_for_company():
    async def scenario():
        batcher = started_batcher(CountingModel(seconds=0), max_batch=64, max_wait=5.0)
        started = time.perf_counter()
        await batcher.submit(["hello"], [""])
        waited = time.perf_counter() - started
        await batcher.stop()
        return waited

    assert asyncio.run(scenario()) < 1.0  # not the 5 s --max-wait-ms allows


def test_two_model_threads_run_two_batches_at_once():
    both_running = threading.Barrier(2, timeout=10)  # one thread alone would wait here, and break it

    def model(texts, contexts):
        both_running.wait()
        return np.ones((len(texts), 2), np.float32)

    async def scenario():
        batcher = started_batcher(model, max_batch=8, max_wait=0, threads=2)
        first = batcher.submit(["a"], [""])
        await asyncio.sleep(0.05)  # the first batch is running
        answers = await asyncio.gather(first, batcher.submit(["b"], [""]))
        await batcher.stop()
        return answers

    assert [a.shape for a in asyncio.run(scenario())] == [(1, 2), (1, 2)]


def test_while_a_batch_runs_a_free_thread_waits_for_half_its_share_of_the_requests():
    # Clients that each wait for their answer come back together; a thread that took the first
    # to return would split them into a small batch and a large one for good.
    release, calls = threading.Event(), []

    def model(texts, contexts):
        calls.append(list(texts))
        if len(calls) == 1:
            release.wait(10)
        return np.ones((len(texts), 2), np.float32)

    async def scenario():
        batcher = started_batcher(model, max_batch=64, max_wait=5.0, threads=2)
        running = batcher.submit(["a"] * 12, [""] * 12)
        await asyncio.sleep(0.05)
        returning = [batcher.submit(["b0"], [""])]
        await asyncio.sleep(0.05)  # one queued: under half a share of (12 + 1) / 3 texts
        returning += [batcher.submit(["b1"], [""]), batcher.submit(["b2"], [""])]  # three: half of (12 + 3) / 3
        started = time.perf_counter()
        await asyncio.gather(*returning)
        waited = time.perf_counter() - started
        release.set()
        await running
        await batcher.stop()
        return waited

    waited = asyncio.run(scenario())
    assert calls[1:] == [["b0", "b1", "b2"]]  # the three as one batch, beside the running one
    assert waited < 1.0  # answered once half the share had come, not after --max-wait-ms


def test_a_free_thread_takes_its_share_of_the_queue_and_leaves_the_rest_queued():
    # A thread that took every queued client would sit idle while they all came back; with a
    # share a batch stays queued for whichever thread is free next.
    released = {"x": threading.Event(), "y": threading.Event()}
    calls = []

    def model(texts, contexts):
        calls.append(list(texts))
        if texts[0] in released:
            released[texts[0]].wait(10)
        return np.ones((len(texts), 2), np.float32)

    async def scenario():
        batcher = started_batcher(model, max_batch=64, max_wait=0, threads=2)
        x = batcher.submit(["x"], [""])
        await asyncio.sleep(0.05)
        y = batcher.submit(["y"], [""])
        await asyncio.sleep(0.05)  # both threads busy: the next nine queue
        queued = [batcher.submit([f"b{i}"], [""]) for i in range(9)]
        released["y"].set()  # one thread is free: its share is (9 queued + 1 running) / 3
        await asyncio.gather(y, *queued)
        released["x"].set()
        await x
        await batcher.stop()

    asyncio.run(scenario())
    assert calls[2] == ["b0", "b1", "b2", "b3"]
    assert sorted(t for call in calls[3:] for t in call) == [f"b{i}" for i in range(4, 9)]


def test_a_batch_runs_as_calls_of_similar_lengths():
    from sft.serve.batcher import length_groups

    lengths = [5, 60, 6, 5, 58, 7, 6, 61]
    groups = length_groups(lengths, max_batch=64, call_cost=20)
    assert sorted(i for g in groups for i in g) == list(range(8))
    assert [sorted(lengths[i] for i in g) for g in groups] == [[5, 5, 6, 6, 7], [58, 60, 61]]
    assert len(length_groups([10] * 100, max_batch=32)) == 4  # never more than max_batch a call
    assert length_groups([3, 4, 5], max_batch=64, call_cost=1000) == [[0, 1, 2]]  # calls dear: one


def test_the_price_of_a_call_is_measured_on_the_model_in_word_pieces():
    from sft.serve.batcher import CALL_COST, estimated_length, measure_call_cost

    def cost(call_ms, piece_ms):  # of a model whose calls advance a clock as a real one's take time
        now = [0.0]

        def model(texts, contexts):
            now[0] += call_ms + piece_ms * sum(estimated_length(t, c) for t, c in zip(texts, contexts))
            return np.ones((len(texts), 2), np.float32)

        return measure_call_cost(model, clock=lambda: now[0])

    assert cost(call_ms=2.0, piece_ms=0.1) == 20  # TensorFlow-like: its op dispatch is dear
    assert cost(call_ms=0.0, piece_ms=0.05) == 0  # int8-like: padding is all a call costs
    assert cost(call_ms=1.0, piece_ms=0.0) == CALL_COST  # no difference to time: the default price


def test_a_failing_model_fails_its_batch_and_the_next_batch_is_answered():
    class Flaky:
        calls = 0

        def __call__(self, texts, contexts):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("boom")
            return np.ones((len(texts), 2), np.float32)

    async def scenario():
        batcher = started_batcher(Flaky(), max_batch=8, max_wait=0)
        with pytest.raises(RuntimeError):
            await batcher.submit(["a"], [""])
        answer = await batcher.submit(["b"], [""])
        await batcher.stop()
        return answer

    assert asyncio.run(scenario()).shape == (1, 2)


# --- the command, end to end ------------------------------------------------------------------


def start_server(*args) -> tuple[subprocess.Popen, int, list[str]]:
    process = subprocess.Popen([sys.executable, "-m", "sft", "serve", "--port", "0", *map(str, args)],
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    log = []
    for line in process.stderr:
        log.append(line)
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if found:
            threading.Thread(target=lambda: log.extend(process.stderr), daemon=True).start()
            return process, int(found.group(1)), log
    raise AssertionError("".join(log))


def call(port: int, method: str, path: str, body=None) -> tuple[int, dict]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        content = body if isinstance(body, bytes) or body is None else json.dumps(body)
        connection.request(method, path, content)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def test_sft_serve_answers_concurrent_clients_refuses_bad_ones_and_stops_on_sigterm(project, tmp_path):
    texts = [e.text for e in read_jsonl(project / "data" / "test.jsonl")] + ["hello", "my card is lost", "¿qué?"]
    expected = [json.loads(line) for line in run(
        "predict", "--run-dir", project / "run", "--json", *sum((["--text", t] for t in texts), [])).stdout.splitlines()]
    process, port, log = start_server("--run-dir", project / "run", "--max-texts", 4, "--batch-threads", 2)
    try:
        deadline = time.monotonic() + 120
        while call(port, "GET", "/readyz")[0] != 200:
            assert time.monotonic() < deadline and process.poll() is None, "".join(log)
            time.sleep(0.1)
        with ThreadPoolExecutor(16) as pool:  # one text a request, all at once
            answers = list(pool.map(lambda t: call(port, "POST", "/v1/classify", {"texts": [t]}), texts))
        assert [status for status, _ in answers] == [200] * len(texts)
        assert [body["answers"][0]["label"] for _, body in answers] == [e["label"] for e in expected]
        assert [body["answers"][0]["confidence"] for _, body in answers] == pytest.approx(
            [e["confidence"] for e in expected], abs=1e-5)
        # The TF Serving client that tokenises on its side gets serving_default's answers from classify_ids.
        client = subprocess.run([sys.executable, ROOT / "scripts" / "tf_serving_client.py", "--url",
                                 f"http://127.0.0.1:{port}/v1/models/run", "--export", project / "run" / "export" / "best",
                                 *texts[-3:]], capture_output=True, text=True, check=True).stdout
        by_ids = [json.loads(line) for line in client.splitlines()]
        by_text = call(port, "POST", "/v1/models/run:predict", {"instances": texts[-3:]})[1]["predictions"]
        assert [a["label"] for a in by_ids] == [a["label"] for a in by_text]
        assert [a["confidence"] for a in by_ids] == pytest.approx([a["confidence"] for a in by_text], abs=1e-5)
        for method, path, body, status in [("POST", "/v1/classify", b"[", 400), ("POST", "/v1/classify", {"texts": ["a"] * 5}, 413),
                                           ("POST", "/v1/models/nope:predict", {"instances": ["a"]}, 404),
                                           ("DELETE", "/v1/classify", None, 405)]:
            got, answer = call(port, method, path, body)
            assert got == status and answer["error"], (path, answer)
        assert call(port, "GET", "/healthz") == (200, {"status": "ok"})
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, "".join(log)
    finally:
        if process.poll() is None:
            process.kill()
    assert "Traceback" not in "".join(log)


def test_a_port_in_use_is_one_line_and_exit_8(project):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "sft", "serve", "--run-dir", project / "run", "--port", str(port)],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 8
    assert done.stderr.strip().splitlines() == [f"error: cannot listen on 127.0.0.1:{port}: the port is in use "
                                                "(is another server running?); choose another --port"]
    assert "tensorflow" not in done.stderr.lower() and time.perf_counter() - started < 30


def test_serve_needs_one_model_and_a_real_export(project, tmp_path):
    assert "give --run-dir RUN or --export DIR" in run("serve", code=2).output
    wrong = run("serve", "--export", tmp_path, code=5)
    assert "is not a folder written by `sft export`" in wrong.stderr


def test_an_export_in_tf_servings_layout_is_served_under_its_name(project, tmp_path):
    run("export", "--run-dir", project / "run", "--out", tmp_path / "models" / "intents" / "3")
    process, port, log = start_server("--export", tmp_path / "models" / "intents" / "3")
    try:
        deadline = time.monotonic() + 120
        while call(port, "GET", "/readyz")[0] != 200:
            assert time.monotonic() < deadline and process.poll() is None, "".join(log)
            time.sleep(0.1)
        status = call(port, "GET", "/v1/models/intents/versions/3")[1]
        assert status["model_version_status"][0]["version"] == "3"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
