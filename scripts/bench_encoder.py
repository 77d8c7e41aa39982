"""What an encoder export costs a training step: peak memory, and time against another export.

    python scripts/bench_encoder.py memory [--encoder DIR] [--length 98]
    python scripts/bench_encoder.py steps DIR_A DIR_B [--precision float32]

`memory`: peak RSS of one process that loads the encoder as training does
(`hub.KerasLayer`, trainable) and runs forward and backward passes on a batch of
32 random ids of the given length (Banking77's longest batch is 98).
`steps`: sft's real training step on the same 50 Banking77 batches with each
encoder under a classification head, alternated three times in one process;
milliseconds a step. DIR is an encoder folder: the bundled one by default
(`sft hub fetch bundled:minilm-l6-uncased`), or one written by another checkout
(`sft hub export`), to measure a change to the encoder.
"""

from __future__ import annotations

import argparse
import resource
import time

import bench

BATCH = 32


def memory(encoder: str, length: int) -> None:
    import sft  # noqa: F401  (tf-keras before TensorFlow)
    import tensorflow as tf
    import tensorflow_hub as hub

    layer = hub.KerasLayer(encoder, trainable=True)
    ids = tf.random.stateless_uniform([BATCH, length], seed=[0, 0], minval=1000, maxval=20000, dtype=tf.int32)
    inputs = {"input_word_ids": ids, "input_mask": tf.ones_like(ids), "input_type_ids": tf.zeros_like(ids)}
    variables = layer.trainable_variables

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(layer(inputs, training=True)["sequence_output"] ** 2)
        return tf.linalg.global_norm(tape.gradient(loss, variables))

    for _ in range(4):
        forward_backward().numpy()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{encoder}: batch ({BATCH}, {length}), forward + backward, peak RSS {peak:.0f} MB")


def steps(encoders: list[str], precision: str, timed: int = 50, warmup: int = 10, rounds: int = 3) -> None:
    runs = {encoder: bench.training(precision, steps=warmup + timed, encoder=encoder) for encoder in encoders}
    batches = list(runs[encoders[0]].dataset)  # the same batches for both
    for run in runs.values():
        for batch in batches[:warmup]:
            run.function(batch)["loss"].numpy()

    milliseconds = {encoder: [] for encoder in encoders}
    for r in range(rounds):
        for encoder in encoders if r % 2 == 0 else encoders[::-1]:
            start = time.perf_counter()
            for batch in batches[warmup:]:
                loss = runs[encoder].function(batch)["loss"]
            loss.numpy()
            milliseconds[encoder].append(1000 * (time.perf_counter() - start) / timed)
    for encoder, ms in milliseconds.items():
        print(f"{encoder}: {', '.join(f'{m:.1f}' for m in ms)} ms a step ({precision}); best {min(ms):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("memory")
    m.add_argument("--encoder", help="encoder folder (default: the bundled MiniLM)")
    m.add_argument("--length", type=int, default=98)
    s = commands.add_parser("steps")
    s.add_argument("encoders", nargs=2, metavar="DIR")
    s.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    args = parser.parse_args()
    if args.command == "memory":
        encoder = args.encoder
        if encoder is None:
            from sft.hub import resolve

            encoder = resolve.resolve_handle("bundled:minilm-l6-uncased", "encoder")
        memory(encoder, args.length)
    else:
        steps(args.encoders, args.precision)


if __name__ == "__main__":
    main()
