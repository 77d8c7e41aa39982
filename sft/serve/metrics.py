"""What `GET /metrics` tells Prometheus: requests by endpoint and code, latency, batch sizes.

Errors are the requests whose `code` is 4xx or 5xx:
`sum by (endpoint, code) (rate(sft_requests_total{code=~"[45].."}[5m]))`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
_SECONDS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServerMetrics:
    """One registry a server (not the process-wide default: tests run several servers in one process)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("sft_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "code"], registry=self.registry)
        self.latency = Histogram("sft_request_duration_seconds", "Time from a request's start to its answer",
                                 ["endpoint"], buckets=_SECONDS, registry=self.registry)
        self.batch_size = Histogram("sft_batch_size", "Texts in each batch run through the model",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
        self.batch_seconds = Histogram("sft_batch_duration_seconds", "Time the model took for a batch",
                                       buckets=_SECONDS, registry=self.registry)
        self.ready = Gauge("sft_model_ready", "1 once the model is loaded and warmed up", registry=self.registry)

    def observe_request(self, endpoint: str, code: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(code)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
