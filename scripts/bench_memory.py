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
    import numpy as np
    import tensorflow as tf

    import sft.precision
    from sft import inputs
    from sft.config import ModelConfig, TrainConfig
    from sft.model import build_classifier
    from sft.optim import build_optimizer
    from sft.train import TrainStep

    stage("imported TensorFlow and sft")
    sft.precision.configure(args.precision)
    config = TrainConfig(batch_size=bench.BATCH, learning_rate=1e-4)
    model_config = ModelConfig(encoder="bundled:minilm-l6-uncased", max_seq_length=args.max_seq_length)
    texts, labels = bench._texts_and_labels("train")
    names = sorted(set(labels))
    preprocessor, _, _ = bench._model_and_texts("train", build_model=False)
    stage("preprocessor loaded")
    split = inputs.encode(preprocessor, bench._examples(texts, labels), {n: i for i, n in enumerate(names)})
    stage("train split encoded")
    model = build_classifier(model_config, len(names), seed=0)
    stage("model built")
    steps = -(-len(split) // bench.BATCH)
    optimizer = build_optimizer(config, steps, model.trainable_variables)
    step = TrainStep(model, optimizer, tf.distribute.get_strategy(), config, np.ones(len(names), np.float32))
    plan = inputs.plan_epoch(split.lengths, bench.BATCH, 1, seed=0, epoch=0)
    dataset = inputs.train_dataset(split, preprocessor, plan, args.max_seq_length,
                                   length_multiple=args.length_multiple)
    function = step.function(True, dataset.element_spec)
    peak = rss_mb()[1]
    for i, batch in enumerate(dataset):
        function(batch)[0].numpy()
        if rss_mb()[1] - peak >= 5:
            stage(f"step {i} {tuple(batch[0]['input_word_ids'].shape)}")
            peak = rss_mb()[1]
    stage(f"after {steps} steps")


if __name__ == "__main__":
    main()
