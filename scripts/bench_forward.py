"""The forward pass of a trained run in float32, mixed_bfloat16 and XLA, side by side in one process.

    python scripts/bench_forward.py --run-dir runs/banking77 [float32 mixed_bfloat16 xla float32]

The shared Banking77 test texts are encoded once; each mode gets a fresh
`Engine` (Grappler rewrites a graph when it first runs) and is timed over 3
passes (forward and softmax in length-sorted batches of 64, as `sft predict`),
best kept. Prints texts/s, test accuracy, and how far the probabilities moved
from the first mode's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="a Banking77 run written by `sft train`")
    parser.add_argument("modes", nargs="*", default=["float32", "mixed_bfloat16", "xla", "float32"],
                        choices=["float32", "mixed_bfloat16", "xla"])
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from sft import inputs
    from sft.engine import Engine
    from sft.trained import load_trained
    from sft.rundir import RunDir

    if "mixed_bfloat16" in args.modes:
        import sft.precision

        sft.precision.configure("mixed_bfloat16")  # its float32 list (erfc) as `sft` sets it; switched per mode below
    trained = load_trained(RunDir(args.run_dir))
    texts, labels = bench._texts_and_labels("test")
    split = inputs.encode(trained.engine.preprocessor, bench._examples(texts, labels),
                          {label: i for i, label in enumerate(trained.labels)})
    first = None
    for mode in args.modes:
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": mode == "mixed_bfloat16"})
        engine = Engine(trained.engine.model, trained.engine.preprocessor,
                        trained.engine.max_seq_length, xla=mode == "xla")
        engine.probabilities(split)  # trace, rewrite, compile
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            probabilities = engine.probabilities(split)
            best = max(best, len(texts) / (time.perf_counter() - start))
        first = probabilities if first is None else first
        print(f"{mode:15s} {best:6.1f} texts/s  test accuracy {(probabilities.argmax(-1) == split.labels).mean():.4f}  "
              f"max |probability change| {np.abs(probabilities - first).max():.4f}", flush=True)


if __name__ == "__main__":
    main()
