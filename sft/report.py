"""An evaluation as pages a team can read before shipping: one HTML file to explore, and Markdown.

`report_<name>/index.html` opens offline in any browser, its script, style, data
and pictures inline: the run's facts, headline figures, a sortable per-class
table, the most confused pairs and the row-normalised confusion matrix (hover for
counts, click for the texts behind a cell), the reliability diagram, the
fallback's coverage against accuracy with the chosen threshold marked, and every
error, filterable by gold and predicted class and searchable. `index.md` says
the same for terminals and pull requests, with `confusion.png` (rows gold,
columns predicted, each row normalised), `per_class_f1.png` and `reliability.png`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from sft.files import atomic_dir

MOST_CONFUSED_EMPTY = "No confusions: every scored example got its gold class (or the fallback)."


def write_report(out: Path, metrics: dict, title: str, rows: list[dict] | None = None,
                 facts: dict | None = None) -> Path:
    """`rows`: one a scored example, {text, context, gold, answer, top, confidence, source}
    (`top`: the most probable class, `answer`: what was said, the fallback's label below its threshold)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    rows, facts = rows or [], facts or {}
    with atomic_dir(out, replace=True) as tmp:
        _confusion(tmp / "confusion.png", metrics)
        _per_class_f1(tmp / "per_class_f1.png", metrics)
        _reliability(tmp / "reliability.png", metrics)
        (tmp / "index.md").write_text(_page(metrics, title), encoding="utf-8")
        (tmp / "index.html").write_text(_html(metrics, title, rows, facts), encoding="utf-8")
    return out / "index.html"


def _html(m: dict, title: str, rows: list[dict], facts: dict) -> str:
    labels = m["confusion_matrix"]["labels"]
    matrix = np.asarray(m["confusion_matrix"]["matrix"], np.int64)
    totals = np.maximum(matrix.sum(axis=1), 1)
    confusions = sorted(({"gold": labels[g], "predicted": labels[p], "count": int(matrix[g, p]),
                          "share": float(matrix[g, p] / totals[g])}
                         for g in range(len(labels)) for p in range(len(labels)) if g != p and matrix[g, p]),
                        key=lambda c: (-c["count"], c["gold"], c["predicted"]))
    headline = [("accuracy", m["accuracy"]), ("macro-F1", m["macro"]["f1"]), ("weighted-F1", m["weighted"]["f1"]),
                ("ECE", m["ece"]), ("examples", f"{m['n']:,}")]
    if m.get("fallback"):
        headline.append(("answered (not the fallback)", m["fallback"]["answered_fraction"]))
    baseline = m.get("baseline", {}).get("per_class", {})
    if baseline:
        headline += [("baseline accuracy", m["baseline"]["accuracy"]), ("baseline macro-F1", m["baseline"]["macro"]["f1"])]
    data = {
        "facts": facts, "headline": headline, "labels": labels, "matrix": matrix.tolist(),
        "per_class": [{"label": label, **c} | ({"baseline_f1": baseline[label]["f1"],
                                                "gain": c["f1"] - baseline[label]["f1"]} if label in baseline else {})
                      for label, c in m["per_class"].items()],
        "fine_tuning": m.get("fine_tuning"), "confusions": confusions,
        "errors": [{k: r[k] for k in ("text", "context", "gold", "top", "confidence", "source")} | {"predicted": r["answer"]}
                   for r in rows if r["answer"] != r["gold"]],
    }
    page = (Path(__file__).with_name("report.html").read_text(encoding="utf-8")
            .replace("__STYLE__", page_style()).replace("__SCRIPT__", page_script())
            .replace("__TITLE__", html.escape(f"{title}: {m['split']}"))
            .replace("__RELIABILITY__", _reliability_svg(m))
            .replace("__COVERAGE__", _coverage_svg(rows, m.get("fallback", {}).get("threshold")))
            # Inside <script>, "</" could end it early: JSON allows "<\/" for the same text.
            .replace("__DATA__", json.dumps(data, ensure_ascii=False).replace("</", "<\\/")))
    return page


def page_style() -> str:
    """The style sheet every page `sft` writes carries inline (no file beside it to lose)."""
    return Path(__file__).with_name("report.css").read_text(encoding="utf-8")


def page_script() -> str:
    """The script helpers every page `sft` writes carries inline: `el` builds elements, `sortable` tables."""
    return Path(__file__).with_name("report.js").read_text(encoding="utf-8")


def _svg(title: str, body: str, x_label: str, y_label: str) -> str:
    """A 320×320 plot of the unit square, 40 px margins; `body` in plot coordinates (0..1, y up)."""
    ticks = "".join(f'<text x="{40 + 240 * t}" y="300" font-size="10" text-anchor="middle">{t:g}</text>'
                    f'<text x="32" y="{284 - 240 * t}" font-size="10" text-anchor="end">{t:g}</text>'
                    for t in (0, 0.5, 1))
    return (f'<figure><svg width="320" height="330" viewBox="0 0 320 330" role="img" aria-label="{html.escape(title)}">'
            f'<text x="160" y="16" text-anchor="middle" font-size="12">{html.escape(title)}</text>'
            f'<rect x="40" y="40" width="240" height="240" fill="none" stroke="#999"/>{ticks}'
            f'<text x="160" y="322" text-anchor="middle" font-size="11">{x_label}</text>'
            f'<text x="10" y="160" font-size="11" transform="rotate(-90 10 160)" text-anchor="middle">{y_label}</text>'
            f'<g transform="translate(40 280) scale(240 -240)">{body}</g></svg></figure>')


def _reliability_svg(m: dict) -> str:
    bars = "".join(f'<rect x="{b["lower"] + 0.005}" y="0" width="{b["upper"] - b["lower"] - 0.01}" '
                   f'height="{b["accuracy"]}" fill="#4477aa" opacity="0.8"><title>{b["count"]} examples, confidence '
                   f'{b["confidence"]:.3f}, accuracy {b["accuracy"]:.3f}</title></rect>'
                   for b in m["calibration"]["bins"] if b["count"])
    diagonal = '<line x1="0" y1="0" x2="1" y2="1" stroke="#999" stroke-width="0.004" stroke-dasharray="0.02"/>'
    return _svg(f"Reliability (ECE {m['ece']:.4f})", bars + diagonal, "confidence", "accuracy")


def _coverage_svg(rows: list[dict], threshold: float | None) -> str:
    """Accuracy of the answers kept against the share kept, as the confidence cut rises."""
    scored = sorted((r for r in rows if r["gold_known"]), key=lambda r: -r["confidence"])
    if not scored:
        return _svg("Coverage and accuracy (no scored examples)", "", "share answered", "accuracy")
    correct = np.cumsum([r["top"] == r["gold"] for r in scored])
    kept = np.arange(1, len(scored) + 1)
    step = max(1, len(scored) // 200)
    points = " ".join(f"{k / len(scored):.4f},{c / k:.4f}" for k, c in zip(kept[::step], correct[::step]))
    body = f'<polyline points="{points} 1,{correct[-1] / len(scored):.4f}" fill="none" stroke="#4477aa" stroke-width="0.006"/>'
    title = "Coverage and accuracy"
    if threshold:
        answered = sum(r["confidence"] >= threshold for r in scored) / len(scored)
        body += (f'<line x1="{answered:.4f}" y1="0" x2="{answered:.4f}" y2="1" stroke="#cc3311" stroke-width="0.006">'
                 f'<title>threshold {threshold:.3f}: {100 * answered:.1f}% answered</title></line>')
        title += f" (threshold {threshold:.3f} at {100 * answered:.0f}%)"
    return _svg(title, body, "share answered (most confident first)", "accuracy of those answered")


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
    lines += ["## Most confused", "",
              *(["| gold | predicted as | count |", "|---|---|---|",
                 *(f"| {p['gold']} | {p['predicted']} | {p['count']} |" for p in m["most_confused"])]
                if m["most_confused"] else [MOST_CONFUSED_EMPTY]), "",
              "The same, to explore (sortable, filterable, every error): [index.html](index.html).", "",
              *_before_and_after(m),
              "## Pictures", "", "![confusion matrix](confusion.png)", "", "![per-class F1](per_class_f1.png)", "",
              "![reliability diagram](reliability.png)", "",
              "## Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|",
              *(f"| {label} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |"
                for label, c in sorted(m["per_class"].items(), key=lambda item: item[1]["f1"])),
              ""]
    return "\n".join(lines)


def _before_and_after(m: dict) -> list[str]:
    if not m.get("baseline"):
        return []
    b, gains = m["baseline"], m["fine_tuning"]
    rows = [("accuracy", m["accuracy"], b["accuracy"])] + [
        (f"{a}-F1", m[a]["f1"], b[a]["f1"]) for a in ("macro", "micro", "weighted")]
    return ["## Before and after fine-tuning", "",
            f"The baseline: a linear classifier on the frozen pretrained encoder (L2 {b['l2']:g}).", "",
            "| | fine-tuned | baseline |", "|---|---|---|", *(f"| {n} | {f:.4f} | {g:.4f} |" for n, f, g in rows), "",
            "Helped most: " + ", ".join(f"{g['label']} ({g['f1_gain']:+.3f} F1)" for g in gains["helped"]) + ".",
            "Hurt most: " + ", ".join(f"{g['label']} ({g['f1_gain']:+.3f} F1)" for g in gains["hurt"]) + ".", ""]


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
