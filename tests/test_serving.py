"""What a chatbot team ships: reports, an "I don't know" fallback, and an export that serves without sft."""

import csv
import json
import subprocess
import sys

import pytest

from sft.data.example import read_jsonl
from tests.conftest import browser_page, sft_cli as run, write_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_hub):
    root = tmp_path_factory.mktemp("serving")
    train = f"{{run_dir: {root / 'run'}, epochs: 3, batch_size: 8, learning_rate: 1.0e-3}}"
    config = write_project(root, tiny_hub / "encoder", 24, train, "fallback: {label: dont_know, max_accuracy_drop: 0.05, out_of_scope_label: out_of_scope}\n")
    run("train", "--config", config)
    return root


def test_training_chooses_a_fallback_threshold_on_validation(trained):
    fallback = json.loads((trained / "run" / "fallback.json").read_text())
    assert fallback["label"] == "dont_know" and 0.0 <= fallback["threshold"] <= 1.0
    assert fallback["validation_accuracy"] - fallback["validation_accuracy_with_fallback"] <= 0.05 + 1e-9


def test_evaluate_writes_errors_and_a_report_with_pictures(trained):
    metrics = json.loads(run("evaluate", "--run-dir", trained / "run", "--report", "--json").stdout)
    assert {"most_confused", "calibration", "ece", "fallback"} <= set(metrics)
    with open(trained / "run" / "eval_test_errors.csv", newline="") as f:
        errors = list(csv.DictReader(f))
    test = read_jsonl(trained / "data" / "test.jsonl")
    answered_right = round(metrics["accuracy"] * metrics["n"])
    assert len(errors) >= len(test) - answered_right  # fallbacks on right answers count as errors too
    assert all(row["gold"] != row["predicted"] for row in errors)
    report = trained / "run" / "report_test"
    for name in ("index.md", "confusion.png", "per_class_f1.png", "reliability.png"):
        assert (report / name).stat().st_size > 0
    assert (report / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "![confusion matrix](confusion.png)" in (report / "index.md").read_text()
    assert metrics["report"] == str(report / "index.html")


def test_the_html_report_opens_offline_in_a_real_browser_and_sorts_and_filters(trained):
    metrics = json.loads(run("evaluate", "--run-dir", trained / "run", "--report", "--json").stdout)
    with browser_page(trained / "run" / "report_test" / "index.html") as (page, problems, requests):
        first_class = lambda: page.locator("#per-class tbody tr").first.locator("td").first.inner_text()  # noqa: E731
        by_f1 = sorted(metrics["per_class"].items(), key=lambda item: item[1]["f1"])
        page.click("#per-class th[data-key=f1]")
        assert metrics["per_class"][first_class()]["f1"] == by_f1[-1][1]["f1"]  # highest first
        page.click("#per-class th[data-key=f1]")
        assert metrics["per_class"][first_class()]["f1"] == by_f1[0][1]["f1"]  # then lowest first

        rows = page.locator("#errors tbody tr")
        everything = rows.count()
        assert everything > 0 and f"{everything} of {everything} errors" in page.inner_text("#error-count")
        gold = page.locator("#gold-filter option").nth(1).get_attribute("value")
        page.select_option("#gold-filter", gold)
        assert 0 < rows.count() <= everything
        assert {rows.nth(i).locator("td").nth(2).inner_text() for i in range(rows.count())} == {gold}
        page.select_option("#gold-filter", "")
        page.fill("#search", "no text says this")
        assert rows.count() == 0

        if page.locator("tr.pair").count():
            page.locator("tr.pair").first.click()
            assert "text(s)" in page.inner_text("#cell")
    assert problems == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests


def test_out_of_scope_examples_are_reported_not_crashed_on(trained):
    examples = [json.loads(line) for line in (trained / "data" / "test.jsonl").read_text().splitlines()]
    examples += [{"text": "what is the weather on mars", "label": "out_of_scope"},
                 {"text": "sing me a song", "label": "out_of_scope"}]
    (trained / "with_oos.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    result = run("evaluate", "--run-dir", trained / "run", "--data", trained / "with_oos.jsonl", "--json",
                 "--model", "last")
    metrics = json.loads(result.stdout)
    assert metrics["unseen_labels"] == {"out_of_scope": 2}
    assert metrics["n"] == len(examples) - 2
    oos = metrics["out_of_scope"]
    assert oos["label"] == "out_of_scope" and oos["out_of_scope_examples"] == 2
    # an out-of-scope text counts as found exactly when the model answers "dont_know" for it
    answers = [json.loads(line)["label"] for line in run(
        "predict", "--run-dir", trained / "run", "--model", "last", "--json",
        "--text", "what is the weather on mars", "--text", "sing me a song").stdout.splitlines()]
    assert oos["out_of_scope_recall"] == answers.count("dont_know") / 2
    assert metrics["fallback"]["threshold"] == json.loads((trained / "run" / "fallback.json").read_text())["threshold"]


def test_compare_runs_side_by_side(trained):
    result = run("evaluate", "--run-dir", trained / "run", "--run-dir", trained / "run", "--model", "last")
    lines = result.stdout.splitlines()
    assert lines[1].startswith("examples") and "macro-F1" in result.stdout
    assert len(lines[2].split()) == 3  # the metric name and one value a run


def test_predict_reads_standard_input_and_prepared_jsonl(trained):
    piped = run("predict", "--run-dir", trained / "run", "--json", "--top-k", "2", input="hello there\ni lost my card\n")
    results = [json.loads(line) for line in piped.stdout.splitlines()]
    assert [r["text"] for r in results] == ["hello there", "i lost my card"]
    assert all(len(r["top_k"]) == 2 and r["top_k"][0]["probability"] >= r["top_k"][1]["probability"] for r in results)
    from_file = run("predict", "--run-dir", trained / "run", "--json", "--input", trained / "data" / "test.jsonl")
    assert len(from_file.stdout.splitlines()) == len(read_jsonl(trained / "data" / "test.jsonl"))


def test_export_serves_the_same_answers_without_sft(trained, tmp_path):
    run("export", "--run-dir", trained / "run", "--out", tmp_path / "served")
    texts = [e.text for e in read_jsonl(trained / "data" / "test.jsonl")]
    expected = [json.loads(line) for line in run(
        "predict", "--run-dir", trained / "run", "--json", *sum((["--text", t] for t in texts), [])).stdout.splitlines()]
    code = (
        "import json, sys\n"
        "import tensorflow as tf, tensorflow_text\n"
        "model = tf.saved_model.load(sys.argv[1])\n"
        "out = model.signatures['serving_default'](text=tf.constant(json.loads(sys.argv[2])))\n"
        "ids = model.signatures['classify_ids']\n"
        "assert 'sft' not in sys.modules\n"
        "labels = open(model.labels_file.asset_path.numpy().decode()).read().split()\n"
        "print(json.dumps({'label': [x.decode() for x in out['label'].numpy()],\n"
        "                  'confidence': out['confidence'].numpy().tolist(), 'labels': labels}))\n"
    )
    served = json.loads(subprocess.run([sys.executable, "-c", code, str(tmp_path / "served"), json.dumps(texts)],
                                       capture_output=True, text=True, check=True).stdout)
    assert served["label"] == [e["label"] for e in expected]
    assert served["confidence"] == pytest.approx([e["confidence"] for e in expected], abs=1e-5)
    assert served["labels"] == json.loads((trained / "run" / "labels.json").read_text())


def test_a_report_without_confusions_says_so(tmp_path):
    import numpy as np

    from sft.metrics import calibration, classification_metrics, most_confused
    from sft.report import MOST_CONFUSED_EMPTY, write_report

    gold = np.array([0, 1, 1])
    metrics = classification_metrics(gold, gold, ["a", "b"])
    metrics |= {"split": "test", "data": "t.jsonl", "model": "best", "calibration": calibration([0.9] * 3, [True] * 3),
                "most_confused": most_confused(metrics["confusion_matrix"]["matrix"], ["a", "b"])}
    metrics["ece"] = metrics["calibration"]["ece"]
    page = write_report(tmp_path / "report", metrics, "perfect")
    assert MOST_CONFUSED_EMPTY in (tmp_path / "report" / "index.md").read_text()
    assert '"confusions": []' in page.read_text()  # the HTML page's script then says so


def test_training_fits_the_frozen_encoder_baseline_and_evaluate_sets_it_beside_the_run(trained):
    baseline = trained / "run" / "baseline"
    assert {"classifier.npz", "validation.json", "features_train.npy", "features_validation.npy"} <= {
        p.name for p in baseline.iterdir()}
    assert json.loads((baseline / "validation.json").read_text())["l2"] > 0
    metrics = json.loads(run("evaluate", "--run-dir", trained / "run", "--report", "--json").stdout)
    assert set(metrics["baseline"]["per_class"]) == set(metrics["per_class"])
    assert 0.0 <= metrics["baseline"]["accuracy"] <= 1.0
    helped = metrics["fine_tuning"]["helped"]
    gains = {label: c["f1"] - metrics["baseline"]["per_class"][label]["f1"] for label, c in metrics["per_class"].items()}
    assert helped[0]["f1_gain"] == pytest.approx(max(gains.values()))
    assert "## Before and after fine-tuning" in (trained / "run" / "report_test" / "index.md").read_text()


def test_the_baseline_is_chosen_on_validation_and_learns_what_is_linear():
    import numpy as np

    from sft.baseline import L2_CHOICES, fit

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 3

    def sample(n):
        y = rng.integers(0, 3, n)
        return (centres[y] + rng.normal(size=(n, 8))).astype(np.float32), y

    model, scores = fit(*sample(300), *sample(100), ["a", "b", "c"], "macro_f1", [])
    assert scores["l2"] in L2_CHOICES and model.l2 == scores["l2"]
    x, y = sample(200)
    assert (model.probabilities(x).argmax(-1) == y).mean() > 0.9  # chance: 1/3


def test_a_run_can_skip_the_baseline(tmp_path, tiny_hub):
    train = f"{{run_dir: {tmp_path / 'run'}, epochs: 1, batch_size: 8, baseline: false}}"
    config = write_project(tmp_path, tiny_hub / "encoder", 12, train)
    run("train", "--config", config)
    assert not (tmp_path / "run" / "baseline").exists()
    assert "baseline" not in json.loads(run("evaluate", "--run-dir", tmp_path / "run", "--json").stdout)


def test_a_run_whose_prepared_data_is_gone_is_scored_without_a_baseline(tmp_path, tiny_hub):
    train = f"{{run_dir: {tmp_path / 'run'}, epochs: 1, batch_size: 8, baseline: false}}"
    config = write_project(tmp_path, tiny_hub / "encoder", 12, train)
    run("train", "--config", config)
    test = tmp_path / "test.jsonl"
    test.write_text((tmp_path / "data" / "test.jsonl").read_text())
    (tmp_path / "data" / "train.jsonl").unlink()
    (tmp_path / "run" / "config.yaml").write_text(
        (tmp_path / "run" / "config.yaml").read_text().replace("baseline: false", "baseline: true"))
    result = run("evaluate", "--run-dir", tmp_path / "run", "--data", test, "--json")
    assert "baseline" not in json.loads(result.stdout)
    assert "no baseline: the baseline is fitted on the run's train split" in result.stderr
