"""How well `sft audit` finds wrong labels, and what fixing them buys: Banking77 with 5% of its train labels flipped.

    python scripts/label_noise.py [--config configs/banking77.yaml] [--work runs/label-noise] [--rate 0.05]
                                  [--seed 7] [--audit-set KEY=VALUE ...] [--correct-first N ...] [--skip-training]

1. `sft prepare` the config's data as documented; its train and validation splits are written back
   out as raw CSVs (clean), and again with `--rate` of their rows given another class at random
   (noisy, seeded); the test file stays the authors'. Both are prepared as given splits, so that
   clean, noisy and corrected data hold the same examples in the same order.
2. `sft audit` the noisy data (with `--audit-set`, e.g. train.rdrop=0 for a shorter schedule), then
   score its label issues against the flipped rows: precision and recall.
3. Every label issue corrected to the audit's suggestion (audit.csv's `correct` column) and the
   noisy data prepared again with `data.labels.corrections`; with `--correct-first N`, also only
   the first N, most suspect, as a reviewer reading from the top would.
4. The config trained and evaluated on test on clean, noisy and corrected data (skip with --skip-training).

Every step is a CLI command, printed before it runs, and is skipped where its output exists, so a
stopped experiment continues where it was. Prints, and writes into WORK/label_noise.json, the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shlex
import subprocess
import sys
from pathlib import Path

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/banking77.yaml")
    parser.add_argument("--work", default="runs/label-noise", type=Path)
    parser.add_argument("--rate", default=0.05, type=float)
    parser.add_argument("--seed", default=7, type=int)
    parser.add_argument("--audit-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--correct-first", action="append", type=int, default=[], metavar="N",
                        help="Also train on the noisy data with only the first N flags corrected (what a reviewer "
                             "reading from the top would fix); repeatable.")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    columns = base["data"]["columns"]

    # 1. the documented split, written out clean and noisy
    documented = work / "documented"
    _sft("prepare", "--config", args.config, "--out", documented, done=documented / "labels.json")
    labels = json.loads((documented / "labels.json").read_text())
    rng = random.Random(args.seed)
    flipped: dict[str, tuple[str, str]] = {}  # "file:line" -> (true label, given label)
    for split in ("train", "validation"):
        examples = [json.loads(line) for line in (documented / f"{split}.jsonl").read_text().splitlines()]
        noisy = [dict(e) for e in examples]
        for i in sorted(rng.sample(range(len(examples)), round(args.rate * len(examples)))):
            noisy[i]["label"] = rng.choice([label for label in labels if label != examples[i]["label"]])
            flipped[f"{work / f'{split}-noisy.csv'}:{i + 2}"] = (examples[i]["label"], noisy[i]["label"])
        _write_csv(work / f"{split}-clean.csv", examples, columns)
        _write_csv(work / f"{split}-noisy.csv", noisy, columns)
    corrected = ["corrected", *(f"corrected-first-{n}" for n in args.correct_first)]
    configs = {kind: _config(base, work, kind) for kind in ("clean", "noisy", *corrected)}
    for kind in ("clean", "noisy"):
        _sft("prepare", "--config", configs[kind], done=work / kind / "data" / "labels.json")

    # 2. the audit, scored against the flipped rows
    audit_dir = work / "noisy" / "audit"
    audit_sets = [x for item in args.audit_set for x in ("--set", item)]
    _sft("audit", "--config", configs["noisy"], *audit_sets, done=audit_dir / "audit.json")
    with (audit_dir / "audit.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    issues = [r for r in rows if "label issue" in r["kind"]]
    found = [r for r in issues if r["source"] in flipped]
    restored = [r for r in found if r["suggested"] == flipped[r["source"]][0]]
    audited = sum(1 for _ in _lines(work / "noisy" / "data" / "train.jsonl")) + sum(
        1 for _ in _lines(work / "noisy" / "data" / "validation.jsonl"))
    result = {
        "examples_audited": audited, "flipped": len(flipped), "flagged": len(issues),
        "flagged_and_flipped": len(found),
        "precision": round(len(found) / max(len(issues), 1), 4), "recall": round(len(found) / len(flipped), 4),
        "suggestion_restores_true_label": round(len(restored) / max(len(found), 1), 4),
        # Most suspect first: how clean the top of the list a reviewer reads first is.
        "precision_of_the_first": {n: round(sum(r["source"] in flipped for r in issues[:n]) / n, 4)
                                   for n in (100, 250, 500) if n <= len(issues)},
        "audit": json.loads((audit_dir / "audit.json").read_text()),
    }

    # 3. every label issue (or the first N) corrected to the suggestion, and prepared again
    for kind in corrected:
        first = int(kind.rpartition("-")[2]) if kind != "corrected" else len(issues)
        chosen = {r["source"] for r in issues[:first]}
        path = work / f"corrections{kind.removeprefix('corrected')}.csv"
        if not path.is_file():
            with path.open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
                writer.writeheader()
                writer.writerows({**r, "correct": r["suggested"] if r["source"] in chosen else ""} for r in rows)
        _sft("prepare", "--config", configs[kind], done=work / kind / "data" / "labels.json")
    rows = [{**r, "correct": r["suggested"] if "label issue" in r["kind"] else ""} for r in rows]
    true_labels = sum(1 for source, (true, _) in flipped.items() if _label_after(rows, source) == true)
    result["flipped_rows_right_after_correction"] = true_labels
    # Rows the flip left alone that the audit relabels: its mistakes, or the authors' own label errors.
    result["unflipped_rows_relabelled"] = sum(1 for r in issues if r["source"] not in flipped)

    # 4. the documented config on clean, noisy and corrected data
    if not args.skip_training:
        result["test"] = {}
        for kind in ("clean", "noisy", *corrected):
            run = work / kind / "run"
            _sft("train", "--config", configs[kind], done=run / "train_summary.json")
            _sft("evaluate", "--run-dir", run, "--json", done=run / "eval_test.json")
            metrics = json.loads((run / "eval_test.json").read_text())
            result["test"][kind] = {"accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro"]["f1"], 4)}
    (work / "label_noise.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


def _config(base: dict, work: Path, kind: str) -> Path:
    """The documented config on the written-out splits: clean, noisy, or noisy with the audit's corrections."""
    config = json.loads(json.dumps(base))
    files = "clean" if kind == "clean" else "noisy"
    config["data"]["splits"] = {"train": [str(work / f"train-{files}.csv")],
                                "validation": [str(work / f"validation-{files}.csv")],
                                "test": base["data"]["splits"]["test"]}
    config["data"]["prepared_dir"] = str(work / kind / "data")
    if kind.startswith("corrected"):
        config["data"].setdefault("labels", {})["corrections"] = str(work / f"corrections{kind.removeprefix('corrected')}.csv")
    config["train"]["run_dir"] = str(work / kind / "run")
    config.setdefault("audit", {})["dir"] = str(work / kind / "audit")
    path = work / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _write_csv(path: Path, examples: list[dict], columns: dict) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([columns["text"], columns["label"]])
        writer.writerows([e["text"], e["label"]] for e in examples)


def _label_after(rows: list[dict], source: str) -> str | None:
    return next((r["correct"] or r["given"] for r in rows if r["source"] == source), None)


def _lines(path: Path):
    return (line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _sft(*args, done: Path) -> None:
    if done.is_file():
        return
    command = [sys.executable, "-m", "sft", *map(str, args)]
    print("+ sft " + shlex.join(command[3:]), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL if "--json" in args else None)


if __name__ == "__main__":
    main()
