"""Where the forward pass's time goes: TensorFlow's profiler on `sft predict`'s path, summed by op type.

    python scripts/profile_forward.py --run-dir runs/banking77 [--precision float32] [--top 18]

The shared Banking77 test texts are encoded once and run through the trained
run's `Engine` (length-sorted batches of 64, forward and softmax), as
`scripts/bench_forward.py` times them: three passes to warm up and time (best
kept), then one under the profiler. Prints texts/s, then each op type's time a
batch (summed over threads), its share and how often it ran.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import bench
import profile_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="a Banking77 run written by `sft train`")
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--top", type=int, default=18)
    args = parser.parse_args()

    import sft.precision

    sft.precision.configure(args.precision)  # before the first trace, as `sft` does
    import tensorflow as tf

    from sft import inputs
    from sft.engine import BATCH_SIZE
    from sft.trained import load_trained
    from sft.rundir import RunDir

    engine = load_trained(RunDir(args.run_dir)).engine
    texts, _ = bench._texts_and_labels("test")
    split = inputs.encode(engine.preprocessor, bench._examples(texts), {})
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        engine.probabilities(split)
        best = max(best, len(texts) / (time.perf_counter() - start))

    logdir = tempfile.mkdtemp(prefix="sft-profile-")
    tf.profiler.experimental.start(logdir)
    engine.probabilities(split)
    tf.profiler.experimental.stop()
    events = profile_step._op_events(next(Path(logdir).rglob("*.xplane.pb")))
    total_ms, lines = profile_step.summarise(((kind, ps) for _, kind, ps in events),
                                             -(-len(texts) // BATCH_SIZE), args.top)
    print(f"{args.precision}: {best:.1f} texts/s (best of 3); ops {total_ms:.1f} ms a batch of "
          f"{BATCH_SIZE} summed over threads, under the profiler")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
