"""`scripts/bench.py engines`: the inference engines side by side on one trained run, in one process.

Engines: TensorFlow float32 (the run's SavedModel export, as `sft serve` runs it:
tokenisation in the graph) and, on a CPU with AMX or AVX512-BF16, the same with its
weights cast once to bfloat16 (`sft.precision.cast_once`); ONNX Runtime float32 and int8 (the run's ONNX
exports, `sft.tokenizer` outside the graph); with `--hf-python`, Transformers +
PyTorch float32 and PyTorch's dynamic int8 (`torch.ao.quantization.quantize_dynamic`)
on the same MiniLM weights and texts, in that environment (`bench_hf.py --phase engines`).

Each engine gets texts and returns probabilities, tokenisation included, on the
run's test texts in file order: batch 1 (p50 and p99 latency over 500 texts),
batches of 8 and 64 (texts/s over all of them, each batch padded to its longest).
Rounds alternate the engines and keep each one's best figure; TensorFlow
bfloat16 runs its rounds in a child process afterwards (the rewrite, once on, would
turn every later graph of this process to bfloat16). Accuracy: each
engine's test accuracy and how many top-1 answers differ from TensorFlow float32;
ONNX float32's largest logit difference from the TensorFlow classifier on the test split.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BATCHES = (1, 8, 64)
LATENCY_TEXTS = 500


def run(run_dir: Path, rounds: int, threads: int, hf_python: str | None, data: str,
        bfloat16_only: bool = False) -> dict:
    """The float32 and int8 engines here; TensorFlow bfloat16 (`bfloat16_only`) in a child process, since
    the bfloat16 rewrite, once switched on, applies to every graph the process runs after it."""
    from sft import startup

    startup.import_tensorflow()
    from sft import hardware
    from sft.data.example import read_jsonl
    from sft.data.prepared import PreparedDir
    from sft.export import export_onnx_run, export_run
    from sft.exported import ExportedModel
    from sft.onnx_model import OnnxModel
    from sft.rundir import RunDir

    run = RunDir.open(run_dir)
    examples = read_jsonl(PreparedDir(Path(run.run_info()["data_dir"])).split_file("test"))
    texts = [e.text for e in examples]
    gold = np.array([run.labels().index(e.label) for e in examples])
    if bfloat16_only:
        engines = {"tensorflow_bfloat16": ExportedModel(export_run(run), bfloat16=True)}
    else:
        engines = {"tensorflow_float32": ExportedModel(export_run(run), bfloat16=False),
                   "onnxruntime_float32": OnnxModel(export_onnx_run(run), threads),
                   "onnxruntime_int8": OnnxModel(export_onnx_run(run, quantize=True), threads)}
    tops = {name: np.concatenate([engine.probabilities(texts[i : i + 64]).argmax(-1)
                                  for i in range(0, len(texts), 64)]) for name, engine in engines.items()}
    results = {name: {"rounds": [], "accuracy": float(np.mean(top == gold)), "top": top.tolist()}
               for name, top in tops.items()}
    for _ in range(rounds):
        for name, engine in engines.items():
            results[name]["rounds"].append(speed(engine.probabilities, texts))
            print(f"{name}: {results[name]['rounds'][-1]}", file=sys.stderr)
    if bfloat16_only:
        return results
    results["onnxruntime_float32"]["max_logit_difference_vs_tensorflow"] = _largest_difference(
        run, engines["onnxruntime_float32"], texts)
    if hardware.inference_in_bfloat16("auto", hardware.detect()):
        results |= _child(run_dir, rounds, data)
    if hf_python:
        for _ in range(rounds):
            hf = _hf(hf_python, data)
            for name, figures in hf.items():
                results.setdefault(name, {"rounds": []})["rounds"].append(figures)
                print(f"{name}: {figures}", file=sys.stderr)
    reference = np.array(results["tensorflow_float32"]["top"])
    for figures in results.values():
        if "top" in figures:
            figures["changed_answers"] = int(np.sum(np.array(figures.pop("top")) != reference))
    for figures in results.values():
        figures |= best(figures["rounds"])
    print(table(results), file=sys.stderr)
    return {"test_texts": len(texts), "engines": results}


def _largest_difference(run, onnx_model, texts: list[str]) -> float:
    """ONNX float32's logits against the TensorFlow classifier's, on the same token ids."""
    import tensorflow as tf

    from sft.trained import load_trained

    model = load_trained(run, exact=True).engine.model
    largest = 0.0
    for i in range(0, len(texts), 64):
        features = onnx_model.tokenizer.encode(texts[i : i + 64])
        expected = model({k: tf.constant(v) for k, v in features.items()}, training=False).numpy()
        largest = max(largest, float(np.abs(onnx_model.logits(features) - expected).max()))
    return largest


def speed(probabilities, texts: list[str]) -> dict:
    """Batch 1 latency (ms) and texts/s at batches of 8 and 64, after a warm-up of each."""
    figures = {}
    for size in BATCHES:
        probabilities(texts[:size])
    latencies = []
    for text in texts[:LATENCY_TEXTS]:
        started = time.perf_counter()
        probabilities([text])
        latencies.append(time.perf_counter() - started)
    figures["batch_1_p50_ms"] = 1000 * float(np.percentile(latencies, 50))
    figures["batch_1_p99_ms"] = 1000 * float(np.percentile(latencies, 99))
    for size in BATCHES[1:]:
        started = time.perf_counter()
        for i in range(0, len(texts), size):
            probabilities(texts[i : i + size])
        figures[f"batch_{size}_texts_per_s"] = len(texts) / (time.perf_counter() - started)
    return figures


def best(rounds: list[dict]) -> dict:
    """Each figure's best round: the lowest latency, the highest throughput."""
    keys = rounds[0].keys() if rounds else []
    return {k: (min if k.endswith("_ms") else max)(r[k] for r in rounds) for k in keys}


def _child(run_dir: Path, rounds: int, data: str) -> dict:
    import sftbench

    command = [sys.executable, str(sftbench.ROOT / "scripts" / "bench.py"), "engines", "--run-dir", str(run_dir),
               "--rounds", str(rounds), "--data", data, "--json", "--bfloat16-only"]
    return json.loads(subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout)["engines"]


def _hf(hf_python: str, data: str) -> dict:
    import sftbench

    command = [hf_python, str(sftbench.ROOT / "scripts" / "bench_hf.py"), "--phase", "engines",
               "--model-dir", str(sftbench.minilm_dir()), "--data", data]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def table(results: dict) -> str:
    lines = ["| engine | batch 1 p50 ms | batch 8 texts/s | batch 64 texts/s | test accuracy | changed answers |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        accuracy = f"{100 * r['accuracy']:.2f}" if "accuracy" in r else "–"
        changed = str(r["changed_answers"]) if "changed_answers" in r else "–"
        lines.append(f"| {name} | {r['batch_1_p50_ms']:.2f} | {r['batch_8_texts_per_s']:.0f} | "
                     f"{r['batch_64_texts_per_s']:.0f} | {accuracy} | {changed} |")
    return "\n".join(lines)
