"""`bench.py memory`: where the training phase's resident memory goes, stage by stage and step by step.

One epoch of sft's training step as the train phase runs it; a line per stage
and for every step that raised the peak by 5 MB or more, with the batch's
shape: the step that pays for the longest batch shows.
"""

from __future__ import annotations

from sftbench import rss_mb, training


def run(precision: str, max_length: int, length_multiple: int) -> dict:
    stages = []

    def stage(name):
        current, peak = rss_mb()
        stages.append({"stage": name, "rss_mb": current, "peak_mb": peak})
        print(f"{name:44s} RSS {current:5d} MB  peak {peak:5d} MB", flush=True)

    stage("start")
    import sft  # noqa: F401  (tf-keras before TensorFlow)

    stage("imported TensorFlow and sft")
    setup = training(precision, max_length=max_length, length_multiple=length_multiple, stage=stage)
    peak = rss_mb()[1]
    for i, batch in enumerate(setup.dataset):
        setup.function(batch)["loss"].numpy()
        if rss_mb()[1] - peak >= 5:
            stage(f"step {i} {tuple(batch[0]['input_word_ids'].shape)}")
            peak = rss_mb()[1]
    stage(f"after {len(setup.plan.step_sizes)} steps")
    return {"precision": precision, "stages": stages, "peak_rss_mb": rss_mb()[1]}
