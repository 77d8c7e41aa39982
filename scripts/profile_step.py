"""Where a training step's time goes: TensorFlow's profiler on sft's real step, summed by op type.

    python scripts/profile_step.py [--precision float32] [--steps 40] [--top 25] [--by type|name|group]

The training step of `scripts/bench.py`'s train phase (bundled MiniLM, shared
Banking77 train split, batch 32, length-grouped batches), 10 warm-up steps,
then `--steps` profiled. Prints each op type's time a step (summed over the
threads that ran it, so the column adds up to more than the wall time on two
cores), its share of all op time and how often it ran; `--by name` splits by
the op's name in the graph instead (forward and gradient ops apart), and
`--by group` by the name with its numbers folded (`layer_3/...mul_12` and
`layer_5/...mul_2` count together as `layer_N/...mul_N`): a kind of work that
is spread over many small ops shows as one line.
"""

from __future__ import annotations

import argparse
import collections
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import bench

_OP_TYPE = re.compile(r"_?[A-Z][A-Za-z0-9]*")  # e.g. MatMul, _MklNativeFusedMatMul
_NUMBER = re.compile(r"(?<=_)\d+")  # layer_3, mul_12


def profile(precision: str, steps: int, warmup: int = 10) -> tuple[list, float]:
    """(every op run of the profiled steps as (name, type, picoseconds), wall seconds a step)."""
    import tensorflow as tf

    run = bench.training(precision, steps=warmup + steps)
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
    return _op_events(next(Path(logdir).rglob("*.xplane.pb"))), wall


def _op_events(path: Path) -> list[tuple[str, str, int]]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--by", default="type", choices=["type", "name", "group"])
    args = parser.parse_args()

    events, wall = profile(args.precision, args.steps)

    def key(name: str, kind: str) -> str:
        if args.by == "group":
            name = _NUMBER.sub("N", name.replace("StatefulPartitionedCall/", ""))
        return kind if args.by == "type" else f"{name} ({kind})"

    total_ms, lines = summarise(((key(name, kind), ps) for name, kind, ps in events), args.steps, args.top)
    print(f"{args.precision}: {1000 * wall:.1f} ms a step (wall); ops {total_ms:.1f} ms a step "
          f"summed over threads, {len(events) // args.steps} op runs a step")
    print("\n".join(lines))


def summarise(keyed: Iterable[tuple[str, int]], runs: int, top: int) -> tuple[float, list[str]]:
    """(op milliseconds a run, summed over threads; a line per key of the `top`: ms a run, share, runs a run)."""
    time_of, count_of = collections.Counter(), collections.Counter()
    for key, ps in keyed:
        time_of[key] += ps
        count_of[key] += 1
    total = sum(time_of.values())
    return total / 1e9 / runs, [f"{ps / 1e9 / runs:8.2f} ms {100 * ps / total:5.1f}%  {count_of[key] / runs:6.1f}x  {key}"
                                for key, ps in time_of.most_common(top)]


if __name__ == "__main__":
    main()
