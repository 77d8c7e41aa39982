"""Where the training phase's resident memory goes: RSS after each stage and after each step.

    python scripts/bench_memory.py [--precision mixed_bfloat16] [--max-seq-length 128] [--length-multiple 1]

One epoch of sft's training step on the shared Banking77 train split with the
bundled MiniLM, as `scripts/bench.py`'s train phase runs it. Prints a line per
stage and for every step that raised the peak by 5 MB or more, with the batch's
shape: the step that pays for the longest batch shows.
"""

from __future__ import annotations

import argparse

import bench


def rss_mb() -> tuple[int, int]:
    """(current, peak) resident set in MB."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith(("VmRSS", "VmHWM")))
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="mixed_bfloat16", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--max-seq-length", type=int, default=bench.MAX_LENGTH)
    parser.add_argument("--length-multiple", type=int, default=1, help="round each batch's length up to this")
    args = parser.parse_args()

    def stage(name):
        print(f"{name:44s} RSS {rss_mb()[0]:5d} MB  peak {rss_mb()[1]:5d} MB", flush=True)

    stage("start")
    import sft  # noqa: F401  (tf-keras before TensorFlow)

    stage("imported TensorFlow and sft")
    run = bench.training(args.precision, max_length=args.max_seq_length, length_multiple=args.length_multiple,
                         stage=stage)
    peak = rss_mb()[1]
    for i, batch in enumerate(run.dataset):
        run.function(batch)["loss"].numpy()
        if rss_mb()[1] - peak >= 5:
            stage(f"step {i} {tuple(batch[0]['input_word_ids'].shape)}")
            peak = rss_mb()[1]
    steps = len(run.plan.step_sizes)
    stage(f"after {steps} steps")


if __name__ == "__main__":
    main()
