"""How `sft serve`'s batches run fastest: one call at a time on every core, or several at once.

    python scripts/batch_threads.py --run-dir RUN [--engine tf|onnx|onnx-int8] [--rounds 3]

For each split of the cores (one call on all of them; a call a core), the run's test
texts as the server would run them, in process, without HTTP: shuffled (seeded) into
batches of 8, 16 and 32 as requests arrive, each batch cut into calls of similar lengths
by `sft.serve.batcher.length_groups` (a call priced as the server measures it), and the
calls of as many batches at once as there are model threads; beside them, all the texts
sorted by length into batches of 64, as `sft predict` runs them. Texts/s, the best of
`--rounds`. Each split runs in a process of its own, since TensorFlow's thread pools are
set once a process (the export served is the run's, exported as `sft serve` would).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BATCHES = (8, 16, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--engine", default="tf", choices=["tf", "onnx", "onnx-int8"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--split", help=argparse.SUPPRESS)  # a child's: model threads x threads a call
    args = parser.parse_args()
    if args.split:
        calls, threads = map(int, args.split.split("x"))
        print(json.dumps(measure(args.run_dir, args.engine, calls, threads, args.rounds)))
        return
    from sft import hardware

    cores = hardware.cores()
    print(f"{args.engine}, {cores} cores, texts/s (best of {args.rounds})")
    print("| model threads x threads a call | " + " | ".join(f"batches of {b}" for b in BATCHES)
          + " | sorted, batches of 64 |")
    print("|---|" + "---|" * (len(BATCHES) + 1))
    for calls, threads in sorted({(1, cores), (cores, 1)}):
        child = subprocess.run([sys.executable, __file__, "--run-dir", str(args.run_dir), "--engine", args.engine,
                                "--rounds", str(args.rounds), "--split", f"{calls}x{threads}"],
                               capture_output=True, text=True)
        if child.returncode:
            sys.exit(child.stderr[-2000:])
        result = json.loads(child.stdout.splitlines()[-1])
        print(f"| {calls} x {threads} | " + " | ".join(f"{result[str(b)]:,.0f}" for b in BATCHES)
              + f" | {result['sorted']:,.0f} |")


def measure(run_dir: Path, engine: str, calls: int, threads: int, rounds: int) -> dict:
    from sftbench.serve import texts_of_test_split

    from sft import startup
    from sft.exported import load_export
    from sft.rundir import RunDir
    from sft.serve.batcher import measure_call_cost, run_grouped

    startup.import_tensorflow()
    from sft import runtime
    from sft.export import export_onnx_run, export_run

    runtime.set_threads(threads)
    run = RunDir.open(run_dir)
    texts = texts_of_test_split(run_dir)
    export = export_run(run, "best") if engine == "tf" else export_onnx_run(run, "best", engine == "onnx-int8")
    model = load_export(export, threads)
    model.warm_up(64)
    call_cost = measure_call_cost(model.probabilities)

    def texts_per_s(batches: list[list[str]], split) -> float:
        lock = threading.Lock()

        def work():
            while True:
                with lock:
                    batch = next(remaining, None)
                if batch is None:
                    return
                split(batch)

        best = 0.0
        for _ in range(rounds):
            remaining = iter(batches)
            started = time.perf_counter()
            workers = [threading.Thread(target=work) for _ in range(calls)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            best = max(best, len(texts) / (time.perf_counter() - started))
        return best

    def grouped(batch: list[str]):
        return run_grouped(model.probabilities, batch, [""] * len(batch), 64, call_cost)

    shuffled = random.Random(0).sample(texts, len(texts))
    result = {str(b): texts_per_s([shuffled[i : i + b] for i in range(0, len(texts), b)], grouped) for b in BATCHES}
    by_length = sorted(texts, key=len)
    result["sorted"] = texts_per_s([by_length[i : i + 64] for i in range(0, len(texts), 64)],
                                   lambda batch: model.probabilities(batch))
    return result


if __name__ == "__main__":
    main()
