"""Speed and memory of sft's real paths on this machine, against baselines measured in the same run.

    python scripts/bench.py [all] [--quick] [--json] [--rounds N] [--hf-python ../hfvenv/bin/python]
    python scripts/bench.py train | infer | tokenize [--quick] [--json] [--rounds N] [--hf-python ...]
    python scripts/bench.py memory [--precision float32] [--max-seq-length 128] [--length-multiple 1]
    python scripts/bench.py profile [--precision float32] [--steps 40] [--top 25] [--by type|name|group]
    python scripts/bench.py profile --run-dir RUN   (a trained run's forward pass instead of the step)
    python scripts/bench.py prepare [--rows 200000]
    python scripts/bench.py serve --run-dir RUN [--engine tf|onnx|onnx-int8] [--concurrency 1,8,32,128]
                              [--seconds 20] [--soak 300]
    python scripts/bench.py engines --run-dir RUN [--rounds 3] [--hf-python ../hfvenv/bin/python]

Every command takes `--data` (default: the shared Banking77 folder, ../shared/data/banking77)
and prints one JSON object with `--json` (`{"command": ..., ...measures}`; the table or
lines go to stderr).

`all` runs each phase in a fresh process, so that its peak resident memory is
its own: the machine's FP32 matmul peak (TensorFlow and NumPy), tokenisation,
sft's training step (length-grouped, dynamically padded batches) in float32
and with `runtime.precision: mixed_bfloat16`, the naive baseline (the same step
on batches padded to 128, no XLA, as the TF tutorials do), inference through
the `sft predict` path at batch 64, and the ceiling: the training step's and
the forward pass's dense matmuls timed alone at the same shapes, what they
would run at if nothing else cost anything. `train`, `infer` and `tokenize` run
their phases alone. Model: the bundled MiniLM-L6, through the same `Plan` and
`Session` as `sft train`. `--quick` times fewer steps (under 5 minutes in all).

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
import subprocess
import sys
from pathlib import Path

import sftbench
from sftbench.phases import HF_PHASES, PHASES

ROOT = sftbench.ROOT
COMMAND_PHASES = {"all": list(PHASES), "train": ["train", "train_bfloat16", "naive_train"], "infer": ["infer"],
                  "tokenize": ["tokenize"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="all",
                        choices=[*COMMAND_PHASES, "memory", "profile", "prepare", "serve", "engines"])
    parser.add_argument("--data", default=str(sftbench.DEFAULT_DATA), help="Banking77's folder (train.csv, test.csv)")
    parser.add_argument("--quick", action="store_true", help="fewer timed steps (under 5 minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout (the table goes to stderr)")
    parser.add_argument("--output", default=str(ROOT / "runs" / "bench.json"), help="where `all` writes its JSON")
    parser.add_argument("--hf-python", help="python of an environment with torch and transformers (optional)")
    parser.add_argument("--rounds", type=int, default=1, help="run every phase this many times, alternating; keep the fastest")
    parser.add_argument("--precision", default=None, choices=["auto", "float32", "mixed_bfloat16"],
                        help="memory, profile: the step's precision [memory: auto; profile: float32]")
    parser.add_argument("--max-seq-length", type=int, default=sftbench.MAX_LENGTH, help="memory")
    parser.add_argument("--length-multiple", type=int, default=1, help="memory: round each batch's length up to this")
    parser.add_argument("--steps", type=int, default=40, help="profile: steps profiled after 10 warm-up steps")
    parser.add_argument("--top", type=int, default=25, help="profile: lines printed")
    parser.add_argument("--by", default="type", choices=["type", "name", "group"], help="profile: sum ops by")
    parser.add_argument("--run-dir", type=Path, help="profile: a trained Banking77 run; its forward pass is profiled; "
                                                      "serve: the run to serve; engines: the run to compare")
    parser.add_argument("--concurrency", default="1,8,32,128", help="serve: open connections, one level after another")
    parser.add_argument("--seconds", type=float, default=20, help="serve: seconds of load at each level")
    parser.add_argument("--soak", type=float, default=300, help="serve: seconds at concurrency 64 (0: none)")
    parser.add_argument("--serve-args", default="", help="serve: more options for `sft serve`, e.g. '--max-batch 32'")
    parser.add_argument("--engine", default="tf", choices=["tf", "onnx", "onnx-int8"],
                        help="serve: the engine behind the server and the offline pass")
    parser.add_argument("--threads", type=int, default=0, help="engines: ONNX Runtime's threads (0: one a core)")
    parser.add_argument("--bfloat16-only", action="store_true", help=argparse.SUPPRESS)  # engines' child process
    parser.add_argument("--rows", type=int, default=200_000, help="prepare: synthetic rows")
    parser.add_argument("--seed", type=int, default=0, help="prepare: the synthetic data's seed")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one phase in this process
    args = parser.parse_args()
    sftbench.use_data(args.data)
    if args.phase:
        # Before TensorFlow, as the `sft` command imports it: `sft` makes tf.keras mean tf-keras. Imported
        # after, TensorFlow loads Keras 3 as well, 75-110 MB that `sft train` never holds.
        import sft  # noqa: F401

        print(json.dumps(PHASES[args.phase](args.quick) | {"peak_rss_mb": sftbench.peak_rss_mb()}))
        return
    if args.command in COMMAND_PHASES:
        summary = _phases(args)
    else:
        summary = {"command": args.command} | _in_process(args)
    if args.json:
        print(json.dumps(summary))


def _in_process(args) -> dict:
    """memory, profile, prepare, serve, engines: one measurement in this process, its lines as it goes."""
    out = sys.stderr if args.json else sys.stdout
    saved, sys.stdout = sys.stdout, out
    try:
        if args.command == "memory":
            from sftbench import memory

            return memory.run(args.precision or "auto", args.max_seq_length, args.length_multiple)
        if args.command == "profile":
            from sftbench import profile

            if args.run_dir:
                return profile.forward(args.run_dir, args.precision or "float32", args.top)
            return profile.step(args.precision or "float32", args.steps, args.top, args.by)
        if args.command == "engines":
            from sftbench import engines

            if not args.run_dir:
                sys.exit("engines needs --run-dir: a trained run (configs/banking77.yaml's, for the published table)")
            if args.bfloat16_only:
                return {"engines": engines.run(args.run_dir, args.rounds, args.threads, None, args.data, True)}
            return engines.run(args.run_dir, args.rounds, args.threads, args.hf_python, args.data)
        if args.command == "serve":
            from sftbench import serve

            if not args.run_dir:
                sys.exit("serve needs --run-dir: a trained run (configs/banking77.yaml's, for the published table)")
            return serve.run(args.run_dir, [int(c) for c in args.concurrency.split(",")], args.seconds, args.soak,
                             args.serve_args.split(), args.engine)
        from sftbench import prepare

        return prepare.run(args.rows, args.seed)
    finally:
        sys.stdout = saved


def _phases(args) -> dict:
    """Each of the command's phases in a fresh process, `--rounds` times; the summary, printed as a table."""
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
    if args.command == "all":
        summary = {"command": "all"} | _summary(results, args.quick)
        table = _table(summary)
    else:
        summary = {"command": args.command, "quick": args.quick, "phases": results}
        table = "\n".join(f"{phase:<20}  {_speed(phase, r):10.1f}  peak RSS {r['peak_rss_mb']:.0f} MB"
                          for phase, r in results.items())
    if args.rounds > 1:
        summary["rounds"] = {phase: [round(_speed(phase, r), 1) for r in runs] for phase, runs in rounds.items()}
    if args.command == "all":
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(summary, indent=2) + "\n")
    print(table, file=sys.stderr if args.json else sys.stdout)
    return summary


def _phase_commands(args):
    """(phase name, command) for each phase of one round: sft's, then Transformers' if asked for."""
    quick = ["--quick"] if args.quick else []
    data = ["--data", args.data]
    for phase in _runnable(COMMAND_PHASES[args.command]):
        yield phase, [sys.executable, __file__, "--phase", phase] + data + quick
    for phase in HF_PHASES if args.hf_python else ():
        if phase in COMMAND_PHASES[args.command]:
            yield f"hf_{phase}", [args.hf_python, str(ROOT / "scripts" / "bench_hf.py"), "--phase", phase,
                                  "--model-dir", str(sftbench.minilm_dir())] + data + quick


def _runnable(phases: list[str]) -> list[str]:
    """`phases` less train_bfloat16 where this machine refuses mixed_bfloat16 (no AVX-512, or a GPU)."""
    if "train_bfloat16" not in phases:
        return phases
    import sft  # noqa: F401  (tf-keras before TensorFlow)
    from sft import hardware
    from sft.errors import ConfigError

    try:
        hardware.choose_precision("mixed_bfloat16", hardware.detect())
    except ConfigError as e:
        print(f"  train_bfloat16: skipped ({e})", file=sys.stderr)
        return [p for p in phases if p != "train_bfloat16"]
    return phases


def _speed(phase: str, result: dict) -> float:
    """The figure a phase is judged by: GFLOP/s for the matmul peak, else its first rate."""
    if phase == "matmul":
        return max(result["tensorflow_gflops"], result["numpy_gflops"])
    return next(value for key, value in result.items() if key.endswith("_per_s"))


def _fastest(phase: str, runs: list[dict]) -> dict:
    """The fastest of a phase's rounds, with the highest peak RSS of them all."""
    return max(runs, key=lambda r: _speed(phase, r)) | {"peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def _summary(r: dict, quick: bool) -> dict:
    peak = max(r["matmul"]["tensorflow_gflops"], r["matmul"]["numpy_gflops"])
    train, naive, bf16 = r["train"], r["naive_train"], r.get("train_bfloat16")
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
        # None where this machine refuses mixed_bfloat16 (no AVX-512, or a GPU): the phase is skipped.
        "train_bfloat16_examples_per_s": bf16 and bf16["examples_per_s"],
        "train_bfloat16_gflops": bf16 and bf16["useful_gflops"],
        "train_bfloat16_fraction_of_peak": bf16 and bf16["useful_gflops"] / peak,
        "train_bfloat16_speedup_over_naive": bf16 and bf16["examples_per_s"] / naive["examples_per_s"],
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
        "train_bfloat16_over_hf_bfloat16": ("train_bfloat16" in r or None)
        and r["train_bfloat16"]["examples_per_s"] / hf_bf16["examples_per_s"],
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
         f"{s['train_bfloat16_fraction_of_peak']:.0%} of the float32 peak"
         if s["train_bfloat16_examples_per_s"] is not None else "skipped: this machine refuses mixed_bfloat16"),
        ("  (bfloat16 matmul, TensorFlow, for reference)", f"{s['matmul_tensorflow_bfloat16_gflops']:.0f} GFLOP/s"),
        ("train, naive (padded to 128)",
         f"{s['naive_train_examples_per_s']:.1f} examples/s, {s['naive_train_padding_fraction']:.0%} padding"),
        ("  speed-up of sft over naive (float32 / bfloat16)",
         f"{s['train_speedup_over_naive']:.2f}x / " + (f"{s['train_bfloat16_speedup_over_naive']:.2f}x"
                                                       if s["train_bfloat16_speedup_over_naive"] else "-")),
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
             f"sft {s['train_over_hf']:.2f}x / "
             + (f"{s['train_bfloat16_over_hf_bfloat16']:.2f}x" if s["train_bfloat16_over_hf_bfloat16"] else "-")),
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
