"""The HTTP API of `sft serve`: the routes, readiness, every error as JSON, metrics around each request.

    POST /v1/classify                      {"texts": [...], "contexts"?: [[turn, ...], ...], "top_k"?: k}
    POST /v1/models/NAME[/versions/V]:predict   TF Serving's REST predict ("instances" or "inputs")
    GET  /v1/models/NAME[/versions/V]      TF Serving's model status; .../metadata its signatures
    GET  /healthz                          the process answers
    GET  /readyz                           the model is loaded and warmed up (503 until then)
    GET  /metrics                          Prometheus' text format

The model loads in a thread after the server starts listening, so that a
supervisor sees a live process at once and sends traffic when /readyz says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sft.errors import one_line
from sft.exported import ExportedModel
from sft.fallback import Fallback
from sft.predict import answers
from sft.serve.batcher import MicroBatcher, measure_call_cost
from sft.serve.metrics import CONTENT_TYPE, ServerMetrics
from sft.serve.schema import BadRequest, Limits, parse_classify, parse_predict, read_json

log = logging.getLogger("sft")

# Signatures whose input is text: their requests join the micro-batches.
_TEXT_SIGNATURES = {"serving_default", "classify_dialogue"}
_MODEL_PATH = re.compile(r"(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?:(?P<metadata>/metadata)|:(?P<verb>\w+))?")


@dataclass(frozen=True)
class ServeOptions:
    model_name: str
    version: str = "1"
    max_batch: int = 64
    max_wait_ms: float = 5.0
    batch_threads: int = 1
    limits: Limits = field(default_factory=Limits)


class _Server:
    """What the routes share: the model once loaded (or why it failed), the batcher, the metrics."""

    def __init__(self, load: Callable[[], ExportedModel], options: ServeOptions):
        self.load, self.options = load, options
        self.on_failure: Callable[[Exception], None] = lambda error: None  # the runner stops the server
        self.metrics = ServerMetrics()
        self.model: ExportedModel | None = None
        self.failure: Exception | None = None
        self.error: str | None = None  # the failure, as clients read it
        self.batcher: MicroBatcher | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.batcher = MicroBatcher(self.options.max_batch, self.options.max_wait_ms / 1000,
                                    self.options.batch_threads, self.metrics.observe_batch)
        self.batcher.start()
        threading.Thread(target=self._load, args=(asyncio.get_running_loop(),), name="sft-load", daemon=True).start()
        try:
            yield
        finally:  # uvicorn has answered what was in flight
            await self.batcher.stop()

    def _load(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            started = time.perf_counter()
            model = self.load()
            model.warm_up(self.options.max_batch)
            call_cost = measure_call_cost(model.probabilities)
            # TensorFlow, the model and what loading them made live as long as the server: out of
            # the collector's sight, a full collection takes 2-4 ms, not the 200-270 ms that each
            # one, every few seconds under load, stopped the event loop for.
            gc.collect()
            gc.freeze()
            _return_freed_memory()
        except Exception as e:  # a bad export, a damaged run: the server says why and stops
            loop.call_soon_threadsafe(self._failed, e)
            return
        loop.call_soon_threadsafe(self._ready, model, call_cost, time.perf_counter() - started)

    def _ready(self, model: ExportedModel, call_cost: int, seconds: float) -> None:
        self.model = model
        self.batcher.model, self.batcher.call_cost = model.probabilities, call_cost
        self.metrics.ready.set(1)
        log.info("model '%s' ready (%s, %d classes) in %.1f s; a call costs as much as %d word pieces",
                 self.options.model_name, model.path, len(model.labels), seconds, call_cost)

    def _failed(self, error: Exception) -> None:
        self.failure, self.error = error, one_line(str(error)) or type(error).__name__
        self.on_failure(error)

    def ready_model(self) -> ExportedModel:
        if self.model is None:
            raise BadRequest(f"the model cannot answer: {self.error}" if self.error else
                             "the model is loading: retry when GET /readyz answers 200", 503)
        return self.model

    # --- routes ---------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if self.model is not None:
            return JSONResponse({"status": "ready", "model": self.options.model_name})
        return JSONResponse({"status": "failed" if self.error else "loading", "error": self.error}, 503)

    async def metrics_text(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    async def classify(self, request: Request) -> Response:
        model = self.ready_model()
        with self.batcher.arrival():
            body = await read_json(request, self.options.limits)
            asked = parse_classify(body, self.options.limits, model.info.config.data, len(model.labels))
            future = self.batcher.submit(asked.texts, asked.contexts)
        probabilities = await future
        return JSONResponse({"answers": answers(asked.texts, probabilities, model.labels, model.info.fallback,
                                                asked.top_k)})

    async def models(self, request: Request) -> Response:
        match = _MODEL_PATH.fullmatch(request.path_params["rest"])
        if not match:
            raise BadRequest(f"no such endpoint: {request.url.path[:200]}", 404)
        name, version, metadata, verb = match.group("name", "version", "metadata", "verb")
        if name != self.options.model_name:
            raise BadRequest(f"model '{name[:100]}' is not served here; this server serves '{self.options.model_name}'", 404)
        if version is not None and version != self.options.version:
            raise BadRequest(f"model '{name}' has no version '{version[:20]}'; it has version {self.options.version}", 404)
        wanted = "POST" if verb else "GET"
        if verb not in (None, "predict"):
            raise BadRequest(f"':{verb[:20]}' is not served: sft serves ':predict' (TF Serving's classify and "
                             "regress APIs need Classification signatures, which the export has none of)", 404)
        if request.method != wanted:
            raise BadRequest(f"{request.method} is not allowed on {request.url.path[:200]}; use {wanted}", 405)
        if verb == "predict":
            return await self.predict(request)
        if metadata:
            model = self.ready_model()
            return JSONResponse({"model_spec": {"name": name, "signature_name": "", "version": self.options.version},
                                 "metadata": {"signature_def": {"signature_def": model.signature_defs()}}})
        state = "AVAILABLE" if self.model else "END" if self.error else "LOADING"
        status = {"error_code": "UNKNOWN", "error_message": self.error} if self.error else {"error_code": "OK",
                                                                                          "error_message": ""}
        return JSONResponse({"model_version_status": [{"version": self.options.version, "state": state,
                                                       "status": status}]})

    async def predict(self, request: Request) -> Response:
        model = self.ready_model()
        with self.batcher.arrival():
            body = await read_json(request, self.options.limits)
            asked = parse_predict(body, self.options.limits, model.signature_inputs)
            if asked.signature in _TEXT_SIGNATURES:
                future = self.batcher.submit(asked.columns["text"], asked.columns.get("context", [""] * len(asked)))
        if asked.signature in _TEXT_SIGNATURES:
            outputs = signature_outputs(await future, model.labels, model.info.fallback)
        else:
            try:
                outputs = {k: v.tolist() for k, v in
                           (await self.batcher.run_alone(model.run_signature, asked.signature, asked.columns)).items()}
            except ValueError as e:
                raise BadRequest(f"the model refused the inputs: {e}") from None
            outputs["label"] = [value.decode("utf-8") for value in outputs["label"]]
        if asked.rows:
            return JSONResponse({"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(len(asked))]})
        return JSONResponse({"outputs": outputs})


def _return_freed_memory() -> None:
    """Loading and freezing a graph frees much more than the model keeps, and glibc's allocator
    holds what is freed for reuse: hand it back, so that resident memory is what serving uses
    (0.6-0.7 GB of 2.4-2.9 with a bfloat16 `tf` export). A no-op without glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def signature_outputs(probabilities: np.ndarray, labels: list[str], fallback: Fallback) -> dict[str, list]:
    """What the export's signatures return, from their probabilities: the same rule, on the same numbers."""
    declined, class_id = fallback.declines(probabilities), probabilities.argmax(-1)
    return {
        "label": [(fallback.label or "") if no else labels[c] for c, no in zip(class_id, declined)],
        "class_id": [-1 if no else int(c) for c, no in zip(class_id, declined)],
        "probabilities": probabilities.tolist(),
        "confidence": probabilities.max(-1).tolist(),
    }


def create_app(load: Callable[[], ExportedModel], options: ServeOptions) -> Starlette:
    """The ASGI app; `load` runs in a thread once the server is up."""
    server = _Server(load, options)
    routes = [
        Route("/v1/classify", server.classify, methods=["POST"]),
        # Every method reaches the handler, which knows which one a path takes: a precise 405.
        Route("/v1/models/{rest:path}", server.models, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/healthz", server.healthz, methods=["GET"]),
        Route("/readyz", server.readyz, methods=["GET"]),
        Route("/metrics", server.metrics_text, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=server.lifespan, exception_handlers={
        BadRequest: _bad_request, HTTPException: _http_error, Exception: _internal_error})
    app.state.server = server
    return _Observed(app, server.metrics)


async def _bad_request(request: Request, error: BadRequest) -> Response:
    return JSONResponse({"error": error.message}, error.status)


async def _http_error(request: Request, error: HTTPException) -> Response:
    if error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path[:200]}; use {allowed}"
    elif error.status_code == 404:
        message = f"no such endpoint: {request.url.path[:200]} (see GET /v1/models/NAME, POST /v1/classify)"
    else:
        message = str(error.detail)
    return JSONResponse({"error": message}, error.status_code, headers=error.headers)


async def _internal_error(request: Request, error: Exception) -> Response:
    log.exception("internal error on %s", request.url.path)
    return JSONResponse({"error": "internal error (a bug in sft: the server's log has the traceback)"}, 500)


class _Observed:
    """Counts and times every HTTP request by endpoint and status code (pure ASGI: no per-request task)."""

    def __init__(self, app: Starlette, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def observed_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self.metrics.observe_request(_endpoint(scope["path"]), status, time.perf_counter() - started)


def _endpoint(path: str) -> str:
    if path.startswith("/v1/models/"):
        return "/v1/models:predict" if path.endswith(":predict") else "/v1/models"
    return path if path in ("/v1/classify", "/healthz", "/readyz", "/metrics") else "other"
