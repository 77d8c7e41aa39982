"""`sft serve`: a trained classifier as an HTTP endpoint a chatbot calls.

- `app.py`: the routes (sft's own `/v1/classify`, TF Serving's REST API, health, metrics);
- `schema.py`: what a request must look like, and the 4xx that says what is wrong;
- `batcher.py`: micro-batching of requests that arrive together;
- `metrics.py`: what Prometheus scrapes;
- `server.py`: the socket, uvicorn, and the stop on SIGTERM.

The model is the export (`sft.exported.ExportedModel`), the graph `sft export` ships.
"""
