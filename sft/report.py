"""An evaluation as a page a team can read before shipping: Markdown with PNG pictures.

`report_<name>/index.md` links `confusion.png` (heat map, rows gold, columns
predicted, each row normalised), `per_class_f1.png` (classes sorted by F1) and
`reliability.png` (accuracy against confidence, the diagonal is perfect
calibration). Plain Markdown renders on any code host, and the folder is
self-contained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sft.files import atomic_dir


def write_report(out: Path, metrics: dict, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    with atomic_dir(out, replace=True) as tmp:
        _confusion(tmp / "confusion.png", metrics)
        _per_class_f1(tmp / "per_class_f1.png", metrics)
        _reliability(tmp / "reliability.png", metrics)
        (tmp / "index.md").write_text(_page(metrics, title), encoding="utf-8")
    return out / "index.md"


def _page(m: dict, title: str) -> str:
    lines = [
        f"# {title}: {m['split']}",
        "",
        f"{m['n']} examples from `{m['data']}`, model `{m['model']}`.",
        "",
        "| metric | precision | recall | F1 |",
        "|---|---|---|---|",
        *(f"| {a} | {m[a]['precision']:.4f} | {m[a]['recall']:.4f} | {m[a]['f1']:.4f} |"
          for a in ("macro", "micro", "weighted")),
        *(f"| {a} without {', '.join(m['excluding']['labels'])} | {m['excluding'][a]['precision']:.4f} | "
          f"{m['excluding'][a]['recall']:.4f} | {m['excluding'][a]['f1']:.4f} |"
          for a in ("macro", "micro") if m.get("excluding")),
        "",
        f"Accuracy **{m['accuracy']:.4f}**, expected calibration error {m['ece']:.4f}.",
        "",
    ]
    if m.get("out_of_scope"):
        o = m["out_of_scope"]
        lines += [f"Out-of-scope (`{o['label']}`, {o['out_of_scope_examples']} examples): in-scope accuracy "
                  f"{o['in_scope_accuracy']:.4f}, recall {o['out_of_scope_recall']:.4f}, "
                  f"precision {o['out_of_scope_precision']:.4f}.", ""]
    if m.get("unseen_labels"):
        lines += [f"Labels not seen in training (not scored as classes): {m['unseen_labels']}.", ""]
    lines += ["## Most confused", "", "| gold | predicted as | count |", "|---|---|---|",
              *(f"| {p['gold']} | {p['predicted']} | {p['count']} |" for p in m["most_confused"]), "",
              "## Pictures", "", "![confusion matrix](confusion.png)", "", "![per-class F1](per_class_f1.png)", "",
              "![reliability diagram](reliability.png)", "",
              "## Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|",
              *(f"| {label} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |"
                for label, c in sorted(m["per_class"].items(), key=lambda item: item[1]["f1"])),
              ""]
    return "\n".join(lines)


def _figure(width: float, height: float):
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _confusion(path: Path, m: dict) -> None:
    labels = m["confusion_matrix"]["labels"]
    matrix = np.asarray(m["confusion_matrix"]["matrix"], np.float64)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.16 * len(labels), 20)
    fig, ax = _figure(size, size)
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(labels))
    small = 6 if len(labels) > 30 else 9
    ax.set_xticks(ticks, labels, rotation=90, fontsize=small)
    ax.set_yticks(ticks, labels, fontsize=small)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of the gold row")
    _save(fig, path)


def _per_class_f1(path: Path, m: dict) -> None:
    items = sorted(m["per_class"].items(), key=lambda item: item[1]["f1"])
    fig, ax = _figure(8, min(2 + 0.18 * len(items), 20))
    ax.barh([label for label, _ in items], [c["f1"] for _, c in items], color="#4477aa")
    ax.axvline(m["macro"]["f1"], color="#cc3311", linestyle="--", label=f"macro-F1 {m['macro']['f1']:.3f}")
    ax.set_xlim(0, 1)
    ax.tick_params(axis="y", labelsize=6 if len(items) > 30 else 9)
    ax.set_xlabel("F1")
    ax.legend(loc="lower right")
    _save(fig, path)


def _reliability(path: Path, m: dict) -> None:
    bins = [b for b in m["calibration"]["bins"] if b["count"]]
    fig, ax = _figure(5, 5)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    ax.bar([(b["lower"] + b["upper"]) / 2 for b in bins], [b["accuracy"] for b in bins], width=0.09,
           color="#4477aa", alpha=0.8, label="accuracy in bin")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="#cc3311",
            label="mean confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"ECE {m['ece']:.4f}")
    ax.legend(loc="upper left")
    _save(fig, path)
