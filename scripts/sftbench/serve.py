"""`scripts/bench.py serve`: `sft serve` under load, beside `sft predict`'s offline throughput, in one run.

1. Offline: the run's test texts through the `sft predict` path in this process
   (length-sorted batches of 64), the fastest of three passes after a warm-up,
   with the engine the server runs (`--engine`).
2. `sft serve --run-dir RUN` in a child process on a free loopback port; its resident
   memory once ready.
3. Parity: every test text sent to POST /v1/classify (16 a request, 8 at a
   time), each answer compared with `sft predict`'s. Then each bad request of
   `BAD_REQUESTS`, with the server's default limits: the status and error it
   got, and whether the server still answers a good request after it.
4. Load: `wrk` (one thread, one Banking77 utterance a request, `classify.lua`)
   at each concurrency for `seconds`; the server's /metrics before and after
   give the mean batch size and what it answered.
5. Soak: concurrency 64 for `soak` seconds, the server's resident memory
   sampled every 5 s: the first minute's mean against the last minute's.
6. SIGTERM during load: the exit code, and how long the stop took.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LUA = Path(__file__).with_name("classify.lua")


def run(run_dir: Path, concurrency: list[int], seconds: float, soak: float, server_args: list[str],
        engine: str = "tf") -> dict:
    if not shutil.which("wrk"):
        raise SystemExit("serve: needs wrk, an HTTP load generator (Debian: apt-get install wrk)")
    texts = texts_of_test_split(run_dir)
    offline, expected = _offline(run_dir, texts, engine)
    server_args = [*server_args, "--engine", engine]
    print(f"offline (sft predict path): {offline:.0f} texts/s on {len(texts)} test texts", file=sys.stderr)
    with tempfile.TemporaryDirectory() as scratch, _Server(run_dir, server_args) as server:
        ready_mb = server.rss_mb()
        print(f"resident memory when ready: {ready_mb:,.0f} MB", file=sys.stderr)
        bodies = Path(scratch) / "bodies.txt"
        bodies.write_text("".join(json.dumps({"texts": [t]}) + "\n" for t in texts), encoding="utf-8")
        parity = _parity(server.port, texts, expected)
        print(f"parity: {parity}", file=sys.stderr)
        refusals = _bad_requests(server.port, run_dir.resolve().name)
        print(_refusal_table(refusals), file=sys.stderr)
        levels = []
        for c in concurrency:
            levels.append(_load(server, bodies, c, seconds))
            levels[-1]["of_offline"] = levels[-1]["requests_per_s"] / offline
            print(_row(levels[-1]), file=sys.stderr)
        result = {"offline_texts_per_s": offline, "test_texts": len(texts), "rss_ready_mb": ready_mb,
                  "parity": parity, "bad_requests": refusals, "load": levels}
        if soak:
            result["soak"] = _soak(server, bodies, 64, soak)
            print(f"soak: {result['soak']}", file=sys.stderr)
        result["sigterm"] = server.terminate_under_load(bodies)
        print(f"SIGTERM under load: {result['sigterm']}", file=sys.stderr)
    return result


def texts_of_test_split(run_dir: Path) -> list[str]:
    """The texts of the run's test split, in file order."""
    from sft.data.example import read_jsonl
    from sft.data.prepared import PreparedDir
    from sft.rundir import RunDir

    run = RunDir.open(run_dir)
    return [e.text for e in read_jsonl(PreparedDir(Path(run.run_info()["data_dir"])).split_file("test"))]


def _offline(run_dir: Path, texts: list[str], engine: str) -> tuple[float, list[dict]]:
    from sft import startup

    startup.import_tensorflow()
    from sft.data.example import Example
    from sft.predict import predict_examples
    from sft.rundir import RunDir
    from sft.trained import load_trained

    trained = load_trained(RunDir.open(run_dir), engine=engine)
    examples = [Example(t, "") for t in texts]
    predict_examples(trained, examples[:256])
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        answers = predict_examples(trained, examples)
        best = max(best, len(texts) / (time.perf_counter() - started))
    return best, answers


def _parity(port: int, texts: list[str], expected: list[dict]) -> dict:
    chunks = [list(range(i, min(i + 16, len(texts)))) for i in range(0, len(texts), 16)]

    def ask(chunk):
        status, body = _post(port, "/v1/classify", {"texts": [texts[i] for i in chunk]})
        assert status == 200, body
        return chunk, body["answers"]

    same_label = same_fallback = 0
    differences = []
    worst = 0.0
    with ThreadPoolExecutor(8) as pool:
        for chunk, answers in pool.map(ask, chunks):
            for i, got in zip(chunk, answers):
                want = expected[i]
                same_label += got["label"] == want["label"]
                same_fallback += got["fallback"] == want["fallback"]
                worst = max(worst, abs(got["confidence"] - want["confidence"]))
                if got["label"] != want["label"]:
                    differences.append({"text": texts[i], "served": got["label"], "predict": want["label"]})
    return {"texts": len(texts), "same_label": same_label, "same_fallback": same_fallback,
            "max_confidence_difference": worst, "different": differences[:10]}


BIG = "a" * (1 << 20)
BAD_REQUESTS = [
    # (what is wrong, method, path, body: bytes, JSON-able, or a list of byte chunks sent without a length)
    ("not JSON", "POST", "/v1/classify", b"{not json"),
    ("no body", "POST", "/v1/classify", b""),
    ("not UTF-8", "POST", "/v1/classify", b"\xff\xfe{}"),
    ("a list, not an object", "POST", "/v1/classify", ["hello"]),
    ("an unknown field", "POST", "/v1/classify", {"text": ["hello"]}),
    ("texts not a list", "POST", "/v1/classify", {"texts": "hello"}),
    ("texts empty", "POST", "/v1/classify", {"texts": []}),
    ("a text not a string", "POST", "/v1/classify", {"texts": [42]}),
    ("a text empty after cleaning", "POST", "/v1/classify", {"texts": ["<br/>  "]}),
    ("a lone surrogate", "POST", "/v1/classify", b'{"texts": ["\\ud800"]}'),
    ("257 texts (limit 256)", "POST", "/v1/classify", {"texts": ["hi"] * 257}),
    ("a text of 5,000 bytes (limit 4,096)", "POST", "/v1/classify", {"texts": ["a" * 5000]}),
    ("a 1 MiB body, its length declared", "POST", "/v1/classify", {"texts": [BIG]}),
    ("a 1 MiB body, chunked", "POST", "/v1/classify", [b'{"texts": ["'] + [b"a" * 65536] * 17 + [b'"]}']),
    ("top_k out of range", "POST", "/v1/classify", {"texts": ["hi"], "top_k": 1000}),
    ("contexts not one a text", "POST", "/v1/classify", {"texts": ["hi", "yo"], "contexts": [["hello"]]}),
    ("an unknown model", "POST", "/v1/models/nope:predict", {"instances": ["hi"]}),
    ("an unknown version", "GET", "/v1/models/{name}/versions/9", None),
    ("an unknown verb", "POST", "/v1/models/{name}:regress", {"examples": []}),
    ("instances and inputs both", "POST", "/v1/models/{name}:predict", {"instances": ["hi"], "inputs": ["hi"]}),
    ("an unknown signature", "POST", "/v1/models/{name}:predict", {"signature_name": "x", "instances": ["hi"]}),
    ("token ids out of range", "POST", "/v1/models/{name}:predict",
     {"signature_name": "classify_ids", "instances": [{"input_word_ids": [101, 10 ** 9], "input_mask": [1, 1],
                                                       "input_type_ids": [0, 0]}]}),
    ("a wrong method", "GET", "/v1/classify", None),
    ("a wrong method", "DELETE", "/v1/models/{name}", None),
    ("an unknown path", "GET", "/v2/classify", None),
]


def _bad_requests(port: int, name: str) -> list[dict]:
    rows = []
    for what, method, path, body in BAD_REQUESTS:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        if isinstance(body, list) and body and isinstance(body[0], bytes):
            content, chunked = iter(body), True
        else:
            content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            chunked = False
        connection.request(method, path.format(name=name), content, encode_chunked=chunked)
        response = connection.getresponse()
        answer = json.loads(response.read() or b"null")
        connection.close()
        still = _post(port, "/v1/classify", {"texts": ["hello"]})[0] == 200
        rows.append({"what": what, "request": f"{method} {path.format(name=name)}", "status": response.status,
                     "error": (answer or {}).get("error"), "then_answers": still})
    return rows


def _refusal_table(rows: list[dict]) -> str:
    lines = ["| request | what is wrong | status | error | next request answered |", "|---|---|---|---|---|"]
    lines += [f"| `{r['request']}` | {r['what']} | {r['status']} | {str(r['error'])[:110]} | "
              f"{'yes' if r['then_answers'] else 'NO'} |" for r in rows]
    return "\n".join(lines)


def _load(server: _Server, bodies: Path, connections: int, seconds: float) -> dict:
    before = server.metrics()
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(LUA),
                          f"http://127.0.0.1:{server.port}", "--", str(bodies)],
                         capture_output=True, text=True, check=True).stdout
    after = server.metrics()
    wrk = json.loads(out.strip().splitlines()[-1])
    answered = {code: after.get(f'requests/{code}', 0) - before.get(f'requests/{code}', 0)
                for code in {k.split("/")[1] for k in after if k.startswith("requests/")}}
    batches = after["batch_count"] - before["batch_count"]
    return {
        "concurrency": connections,
        "requests": wrk["requests"],
        "requests_per_s": wrk["requests"] / wrk["seconds"],
        "latency_ms": wrk["latency_ms"],
        "mean_batch": (after["batch_sum"] - before["batch_sum"]) / batches if batches else 0.0,
        "client_errors": sum(wrk["errors"].values()),
        "server_answers": {code: n for code, n in answered.items() if n},
        # wrk stops with up to `connections` requests in flight: the server answers them, wrk does not count them.
        "unaccounted": answered.get("200", 0) - wrk["requests"],
    }


def _soak(server: _Server, bodies: Path, connections: int, seconds: float) -> dict:
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample():
        started = time.perf_counter()
        while not stop.wait(5.0):
            samples.append((time.perf_counter() - started, server.rss_mb()))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        level = _load(server, bodies, connections, seconds)
    finally:
        stop.set()
        sampler.join()
    first = [rss for t, rss in samples if t <= 60]
    last = [rss for t, rss in samples if t >= samples[-1][0] - 60]
    first_mb, last_mb = sum(first) / len(first), sum(last) / len(last)
    return level | {"seconds": seconds, "rss_first_minute_mb": first_mb, "rss_last_minute_mb": last_mb,
                    "rss_change": last_mb / first_mb - 1, "rss_samples_mb": [round(r, 1) for _, r in samples]}


def _row(level: dict) -> str:
    latency = level["latency_ms"]
    return (f"concurrency {level['concurrency']:>3}: {level['requests_per_s']:7.1f} requests/s "
            f"({level['of_offline']:.0%} of offline), p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms, "
            f"p99 {latency['p99']:.1f} ms, mean batch {level['mean_batch']:.1f}, errors {level['client_errors']}")


def _post(port: int, path: str, body) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


class _Server:
    """`sft serve` in a child process, on a port it picked itself."""

    def __init__(self, run_dir: Path, args: list[str]):
        self.command = [sys.executable, "-m", "sft", "serve", "--run-dir", str(run_dir), "--port", "0", *args]

    def __enter__(self) -> _Server:
        self.process = subprocess.Popen(self.command, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self.port = None
        for line in self.process.stderr:
            self.log.append(line)
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
            if " ready (" in line:
                break
        else:
            raise SystemExit("sft serve did not start:\n" + "".join(self.log[-20:]))
        threading.Thread(target=lambda: [self.log.append(line) for line in self.process.stderr], daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def metrics(self) -> dict:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
        connection.close()
        values = {}
        for line in text.splitlines():
            found = re.fullmatch(r'sft_requests_total\{code="(\d+)",endpoint="/v1/classify"\} (\S+)', line)
            if found:
                values[f"requests/{found.group(1)}"] = float(found.group(2))
            for key in ("sum", "count"):
                if line.startswith(f"sft_batch_size_{key} "):
                    values[f"batch_{key}"] = float(line.split()[1])
        return values

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    def terminate_under_load(self, bodies: Path) -> dict:
        """SIGTERM while wrk keeps 32 connections busy: the server should finish and exit 0."""
        load = subprocess.Popen(["wrk", "-t1", "-c32", "-d5s", "-s", str(LUA), f"http://127.0.0.1:{self.port}",
                                 "--", str(bodies)], stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        stopped = time.perf_counter() - started
        load.wait()
        return {"exit_code": code, "seconds_to_stop": round(stopped, 2)}
