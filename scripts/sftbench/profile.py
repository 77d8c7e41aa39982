"""`bench.py profile`: where the time goes, by TensorFlow's profiler, summed by op type (or name).

`step`: sft's real training step as the train phase runs it, 10 warm-up steps,
then `steps` profiled. `forward`: a trained run's predict path (length-sorted
batches of 64, forward and softmax) on the test split. Each op's time is summed
over the threads that ran it, so the column adds up to more than the wall time
on two cores. `by="name"` splits by the op's name in the graph (forward and
gradient ops apart); `by="group"` folds the numbers in names (`layer_3/...mul_12`
and `layer_5/...mul_2` count together): work spread over many small ops shows
as one line.
"""

from __future__ import annotations

import collections
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from sftbench import examples, texts_and_labels, training

_OP_TYPE = re.compile(r"_?[A-Z][A-Za-z0-9]*")  # e.g. MatMul, _MklNativeFusedMatMul
_NUMBER = re.compile(r"(?<=_)\d+")  # layer_3, mul_12


def step(precision: str, steps: int, top: int, by: str) -> dict:
    events, wall = _profile_steps(precision, steps)

    def key(name: str, kind: str) -> str:
        if by == "group":
            name = _NUMBER.sub("N", name.replace("StatefulPartitionedCall/", ""))
        return kind if by == "type" else f"{name} ({kind})"

    total_ms, lines = summarise(((key(name, kind), ps) for name, kind, ps in events), steps, top)
    print(f"{precision}: {1000 * wall:.1f} ms a step (wall); ops {total_ms:.1f} ms a step "
          f"summed over threads, {len(events) // steps} op runs a step")
    print("\n".join(lines))
    return {"what": "step", "precision": precision, "step_ms": 1000 * wall, "op_ms_per_step": total_ms}


def forward(run_dir: Path, precision: str, top: int) -> dict:
    from sft import hardware
    from sft import precision as precisions

    precision = hardware.choose_precision(precision, hardware.detect()).precision  # auto, or refused here
    precisions.configure(precision)  # before the first trace, as `sft` does
    import tensorflow as tf

    from sft import inputs
    from sft.engine import BATCH_SIZE
    from sft.rundir import RunDir
    from sft.trained import load_trained

    engine = load_trained(RunDir(run_dir)).engine
    texts, _ = texts_and_labels("test")
    split = inputs.encode(engine.preprocessor, examples(texts), {})
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        engine.split_probabilities(split)
        best = max(best, len(texts) / (time.perf_counter() - start))
    logdir = tempfile.mkdtemp(prefix="sft-profile-")
    tf.profiler.experimental.start(logdir)
    engine.split_probabilities(split)
    tf.profiler.experimental.stop()
    events = op_events(next(Path(logdir).rglob("*.xplane.pb")))
    total_ms, lines = summarise(((kind, ps) for _, kind, ps in events), -(-len(texts) // BATCH_SIZE), top)
    print(f"{precision}: {best:.1f} texts/s (best of 3); ops {total_ms:.1f} ms a batch of "
          f"{BATCH_SIZE} summed over threads, under the profiler")
    print("\n".join(lines))
    return {"what": "forward", "precision": precision, "infer_texts_per_s": best, "op_ms_per_batch": total_ms}


def _profile_steps(precision: str, steps: int, warmup: int = 10) -> tuple[list, float]:
    """(every op run of the profiled steps as (name, type, picoseconds), wall seconds a step)."""
    import tensorflow as tf

    run = training(precision, steps=warmup + steps)
    batches = list(run.dataset)
    for batch in batches[:warmup]:
        run.function(batch)["loss"].numpy()

    logdir = tempfile.mkdtemp(prefix="sft-profile-")
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for batch in batches[warmup:]:
        loss = run.function(batch)["loss"]
    loss.numpy()
    wall = (time.perf_counter() - start) / steps
    tf.profiler.experimental.stop()
    return op_events(next(Path(logdir).rglob("*.xplane.pb"))), wall


def op_events(path: Path) -> list[tuple[str, str, int]]:
    """(op name, op type, picoseconds) of every TensorFlow op the host ran."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    events = []
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                # Executor events are named "op_name:OpType"; Python and runtime events are not.
                name, _, kind = plane.event_metadata[event.metadata_id].name.rpartition(":")
                if name and not name.endswith(":") and _OP_TYPE.fullmatch(kind):
                    events.append((name, kind, event.duration_ps))
    return events


def summarise(keyed: Iterable[tuple[str, int]], runs: int, top: int) -> tuple[float, list[str]]:
    """(op milliseconds a run, summed over threads; a line per key of the `top`: ms a run, share, runs a run)."""
    time_of, count_of = collections.Counter(), collections.Counter()
    for key, ps in keyed:
        time_of[key] += ps
        count_of[key] += 1
    total = sum(time_of.values())
    return total / 1e9 / runs, [f"{ps / 1e9 / runs:8.2f} ms {100 * ps / total:5.1f}%  {count_of[key] / runs:6.1f}x  {key}"
                                for key, ps in time_of.most_common(top)]
