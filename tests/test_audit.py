"""`sft audit`: out-of-fold probabilities over k folds, the label errors cleanlab finds in them, near-duplicates
under different labels, a killed audit resumed, and the fixes going back through `sft prepare`."""

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from sft.audit import CSV_COLUMNS, assign_folds, find_issues, near_duplicate_groups, near_key
from sft.data.example import Example
from tests.conftest import INTENTS, browser_page, sft_cli, write_csv

# Raw CSV line -> the wrong label it is given; rows 2-31 are greetings, 32-61 lost cards, 62-91 balances.
FLIPPED = {5: "lost_card", 17: "balance", 42: "balance", 52: "greeting", 79: "greeting", 87: "lost_card"}


def test_folds_are_stratified_by_class_and_keep_a_dialogue_together():
    labels = ["a"] * 50 + ["b"] * 20 + ["c"] * 3
    alone = [None] * len(labels)
    folds = assign_folds(alone, labels, 5, seed=0)
    for label, n in (("a", 50), ("b", 20)):
        counts = np.bincount([f for x, f in zip(labels, folds) if x == label], minlength=5)
        assert counts.tolist() == [n // 5] * 5
    assert len({f for x, f in zip(labels, folds) if x == "c"}) == 3  # a small class spreads out
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1
    assert (assign_folds(alone, labels, 5, seed=0) == folds).all()
    assert not (assign_folds(alone, labels, 5, seed=1) == folds).all()

    dialogues = [f"d{i // 3}" for i in range(60)]
    folds = assign_folds(dialogues, ["a", "b", "a"] * 20, 4, seed=0)
    for d in range(20):
        assert len(set(folds[3 * d:3 * d + 3])) == 1
    assert np.bincount(folds).tolist() == [15] * 4


def test_near_duplicates_differ_only_in_case_accents_punctuation_and_spacing():
    assert near_key("Check my  Balance, please!!") == near_key("check my balance please") == "check my balance please"
    assert near_key("Café?") == near_key("cafe")
    examples = [Example("Check my balance, please!", "balance"), Example("check my balance please", "lost_card"),
                Example("check my balance", "lost_card"),  # another text
                Example("Hi!", "greeting"), Example("hi", "greeting"),  # same label: no conflict
                Example("yes", "agree", context=["ok?"]), Example("Yes.", "disagree", context=["ok"]),
                Example("yes", "agree", context=["no way"])]  # another context
    assert sorted(map(sorted, near_duplicate_groups(examples))) == [[0, 1], [5, 6]]


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_hub):
    """90 requests of three intents, six of them mislabelled, and two near-duplicates under different labels;
    an audit of 3 folds of 10 epochs on the tiny encoder."""
    root = tmp_path_factory.mktemp("audit")
    rows = [{"text": f"{texts[i % 5]} {i}", "label": label} for label, texts in INTENTS.items() for i in range(30)]
    for line, wrong in FLIPPED.items():
        rows[line - 2]["label"] = wrong  # line 1 is the header
    rows += [{"text": "Check my balance, please!!", "label": "balance"},
             {"text": "check my  balance please", "label": "lost_card"}]
    write_csv(root / "raw.csv", rows)
    (root / "c.yaml").write_text(
        f"data: {{files: [{root / 'raw.csv'}], validation_size: 0.2, test_size: 0.0, prepared_dir: {root / 'data'}}}\n"
        f"model: {{encoder: {tiny_hub / 'encoder'}, max_seq_length: 32}}\n"
        f"train: {{batch_size: 8, learning_rate: 1.0e-2, run_dir: {root / 'run'}}}\n"
        "runtime: {precision: float32, log_every_steps: 5, checkpoint_every_steps: 5}\n"
        "audit: {folds: 3, epochs: 10}\n")
    sft_cli("prepare", "--config", root / "c.yaml")
    return root


@pytest.fixture(scope="module")
def audited(project):
    result = sft_cli("audit", "--config", project / "c.yaml", "--json")
    return json.loads(result.stdout), project / "run-audit"


def flagged(audit_dir) -> list[dict]:
    with (audit_dir / "audit.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_cleanlab_flags_the_labels_the_out_of_fold_model_confidently_contradicts():
    rng = np.random.default_rng(0)
    true = np.repeat(np.arange(4), 50)
    probabilities = rng.dirichlet(np.ones(4), size=200) * 0.3
    probabilities[np.arange(200), true] += 0.7  # a decent model: the true class first, 0.7 or more
    given = true.copy()
    wrong = rng.choice(200, size=10, replace=False)
    given[wrong] = (true[wrong] + 1) % 4
    issues = find_issues(given, probabilities)
    # Confident learning estimates how many labels are wrong and flags that many: no right label
    # here, and nearly all the wrong ones.
    assert set(issues.tolist()) <= set(wrong.tolist()) and len(issues) >= 8
    scores = probabilities[issues, given[issues]]
    assert (np.diff(scores) >= 0).all()  # most suspect first


def test_a_class_no_audited_example_carries_is_left_out_of_cleanlabs_count():
    probabilities = np.full((6, 3), 0.05)
    probabilities[np.arange(6), [0, 0, 0, 2, 2, 0]] = 0.9
    assert find_issues(np.array([0, 0, 0, 2, 2, 2]), probabilities).tolist() == [5]


@pytest.mark.slow
def test_the_audit_writes_the_suspects_most_suspect_first_and_the_near_duplicates(project, audited):
    summary, audit_dir = audited
    rows = flagged(audit_dir)
    assert tuple(rows[0]) == CSV_COLUMNS
    audited_sources = {e["source"] for split in ("train", "validation")
                       for e in map(json.loads, (project / "data" / f"{split}.jsonl").read_text().splitlines())}
    assert summary["examples"] == len(audited_sources) == 92
    issues = {r["source"]: r for r in rows if "label issue" in r["kind"]}
    assert summary["label_issues"] == len(issues) and 0 < len(issues) < 46
    scores = [float(r["score"]) for r in issues.values()]
    assert scores == sorted(scores)
    for r in issues.values():
        assert r["suggested"] != r["given"] and r["correct"] == ""
    # The tiny random encoder is a weak judge, but it scores the mislabelled rows far below the rest.
    oof = np.load(audit_dir / "fold-1" / "predictions.npy")
    assert oof.shape[1] == 3 and np.allclose(oof.sum(axis=1), 1, atol=1e-5)
    flipped = {f"{project / 'raw.csv'}:{line}" for line in FLIPPED}
    assert len(flipped & issues.keys()) >= len(FLIPPED) // 2
    near = [r for r in rows if "near duplicate" in r["kind"]]
    assert sorted(r["given"] for r in near) == ["balance", "lost_card"] and summary["near_duplicate_groups"] == 1
    page = (audit_dir / "index.html").read_text()
    assert "__" not in page and json.dumps(rows[0]["text"])[1:-1] in page and "<script src" not in page


def start_audit(project, out):
    return subprocess.Popen([sys.executable, "-m", "sft", "audit", "--config", str(project / "c.yaml"), "--out", str(out)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=os.environ | {"PYTHONUNBUFFERED": "1"})


def wait_for(process, fold: int) -> str:
    """Read the audit's log until fold `fold` is into its fourth epoch (a checkpoint every 5 steps, 8 an epoch)."""
    seen, in_fold = [], False
    for line in process.stderr:
        seen.append(line)
        in_fold = in_fold or f"fold {fold}/3: training" in line or f"fold {fold}/3: resuming" in line
        if in_fold and "epoch 4/10 step" in line:
            return "".join(seen)
    raise AssertionError("the audit ended before fold %d's fourth epoch:\n%s" % (fold, "".join(seen)))


@pytest.mark.slow
def test_a_killed_audit_resumes_mid_fold_and_ends_as_the_uninterrupted_one(project, audited):
    out = project / "killed-audit"
    process = start_audit(project, out)
    wait_for(process, 2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (out / "fold-1" / "predictions.npy").is_file() and not (out / "fold-2" / "predictions.npy").exists()

    process = start_audit(project, out)  # resumes fold 2, then is stopped politely in fold 3
    log = wait_for(process, 3)
    assert "1 of 3 folds predicted" in log and "fold 2/3: resuming" in log and "fold 1/3: training" not in log
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait() == 75 and "Traceback" not in rest
    assert "stopped by SIGTERM" in rest and "in fold 3; checkpoint saved. Continue with the same `sft audit`" in rest

    result = sft_cli("audit", "--config", project / "c.yaml", "--out", out)
    assert "2 of 3 folds predicted" in result.stderr and "fold 3/3: resuming" in result.stderr
    assert flagged(out) == flagged(audited[1])


def test_an_audit_without_prepared_data_says_which_command_makes_it(project):
    result = sft_cli("audit", "--config", project / "c.yaml", "--data", project / "nowhere", code=4)
    assert "is not a prepared-data folder" in result.stderr and "sft prepare --config" in result.stderr


@pytest.mark.slow
def test_an_audit_of_other_settings_is_refused_unless_overwritten(project, audited):
    result = sft_cli("audit", "--config", project / "c.yaml", "--set", "audit.epochs=2", code=5)
    assert "holds an audit of other data or settings" in result.stderr


@pytest.mark.slow
def test_the_audits_suggestions_go_back_through_prepare(project, audited):
    rows = flagged(audited[1])
    for row in rows:
        row["correct"] = row["suggested"] if "label issue" in row["kind"] else ""
    fixes = write_csv(project / "fixes.csv", rows, fieldnames=list(CSV_COLUMNS))
    result = sft_cli("prepare", "--config", project / "c.yaml", "--out", project / "fixed", "--json",
                     "--set", f"data.labels.corrections={fixes}")
    report = json.loads(result.stdout)
    assert report["corrections"]["relabelled"] == sum(r["correct"] != r["given"] for r in rows if r["correct"])


@pytest.mark.slow
def test_the_audit_page_opens_offline_in_a_real_browser_and_sorts_and_filters(audited):
    rows = flagged(audited[1])
    with browser_page(audited[1] / "index.html") as (page, problems, requests):
        shown = page.locator("#flagged tbody tr")
        assert shown.count() == len(rows) and f"{len(rows)} of {len(rows)} flagged" in page.inner_text("#count")

        page.click("#flagged th[data-key=score]")  # highest score first
        assert float(shown.first.locator("td").nth(4).inner_text()) == max(float(r["score"]) for r in rows)
        page.select_option("#kind-filter", "near duplicate")
        assert shown.count() == 2
        page.select_option("#kind-filter", "")
        page.fill("#search", "no text says this")
        assert shown.count() == 0
    assert problems == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
