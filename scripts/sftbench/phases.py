"""The phases of `scripts/bench.py all`: each runs in a fresh process and returns one dict of measures."""

from __future__ import annotations

import sys
import time

from sftbench import (BATCH, INFER_BATCH, MAX_LENGTH, NAIVE_LENGTH, examples, model_and_texts,
                      non_embedding_params, texts_and_labels, training)


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

    preprocessor, _, texts = model_and_texts("train", build_model=False)
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
    preprocessor, trained, texts = model_and_texts("test", build_model=True)
    texts_as_examples = examples(texts)
    trained.probabilities(texts_as_examples[:256])  # warm-up: trace and first batches
    best = 0.0
    for _ in range(1 if quick else 3):
        start = time.perf_counter()
        trained.probabilities(texts_as_examples)  # encode + length-sorted batches of 64 + forward, as `sft predict`
        best = max(best, len(texts) / (time.perf_counter() - start))
    # Useful work: 2 FLOPs a non-embedding weight a real (unpadded) token, as for training's 6.
    lengths = inputs.encode(trained.engine.preprocessor, texts_as_examples, {}).lengths
    params = non_embedding_params(trained.engine.model)
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

    preprocessor, trained, test_texts = model_and_texts("test", build_model=True)
    params = non_embedding_params(trained.engine.model)
    rng = np.random.default_rng(0)
    kernels = [tf.Variable(rng.standard_normal(v.shape, np.float32)) for v in trained.engine.model.trainable_variables
               if v.name.startswith("transformer/layer_") and v.name.endswith("kernel:0")]
    if not kernels:
        sys.exit("ceiling: no transformer/layer_<n>/.../kernel variables in the model")
    widths = sorted({n for k in kernels for n in k.shape})

    def lengths_of(texts) -> np.ndarray:  # in word pieces, before truncation, as `inputs` plans batches
        return inputs.encode(preprocessor, examples(texts), {}).lengths

    warmup, timed = 10, 50 if quick else None  # the train phase's steps, from the same plan as `training`
    lengths = lengths_of(texts_and_labels("train")[0])
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
    stepped = int(sum(plan.step_sizes[warmup:]))
    params = non_embedding_params(run.model)
    return {
        "examples_per_s": stepped / seconds,
        "real_tokens_per_s": real / seconds,
        "padded_tokens_per_s": padded / seconds,
        "padding_fraction": 1 - real / padded,
        "useful_gflops": 6 * params * real / seconds / 1e9,
        "non_embedding_params": params,
        "timed_steps": len(plan.step_sizes) - warmup,
        "seconds": seconds,
    }
