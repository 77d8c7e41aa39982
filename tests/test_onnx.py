"""The ONNX Runtime engine: an ONNX export computes what the TensorFlow model computes, an int8 export
is checked and refused when it costs too much accuracy, and predict, evaluate and serve answer
through it as they do through TensorFlow."""

import json

import numpy as np
import pytest

from sft.data.example import read_jsonl
from tests.conftest import sft_cli as run
from tests.test_serve import make_app, project, wait_ready  # noqa: F401  (project: the same tiny run, exported)

pytestmark = pytest.mark.slow
# `project`: a tiny run reading two turns of context, with an "I don't know" fallback (tests/test_serve.py).


@pytest.fixture(scope="module")
def tf_run(project):
    from sft.rundir import RunDir
    from sft.trained import load_trained

    return load_trained(RunDir(project / "run"))


def test_a_float32_export_computes_the_tensorflow_models_logits(project, tf_run):
    import tensorflow as tf

    from sft.onnx_model import OnnxModel

    out = run("export", "--run-dir", project / "run", "--out", project / "f32", "--format", "onnx").stdout
    assert out.strip() == str(project / "f32")
    model = OnnxModel(project / "f32")
    examples = read_jsonl(project / "data" / "test.jsonl")
    contexts = [" ".join(e.context[-2:]) for e in examples]
    features = model.tokenizer.encode([e.text for e in examples], contexts)
    expected = tf_run.engine.model({k: tf.constant(v) for k, v in features.items()}, training=False).numpy()
    assert np.abs(model.logits(features) - expected).max() <= 1e-4
    check = json.loads((project / "f32" / "assets.extra" / "sft.json").read_text())["onnx"]["check"]
    assert check["max_logit_difference_float32_vs_tensorflow"] <= 1e-4
    assert check["changed_answers"] == 0 and check["accuracy_drop"] == 0


def test_an_int8_export_records_what_quantisation_cost(project):
    run("export", "--run-dir", project / "run", "--out", project / "int8", "--format", "onnx", "--quantize", "int8",
        "--max-accuracy-drop", "1")
    info = json.loads((project / "int8" / "assets.extra" / "sft.json").read_text())["onnx"]
    assert info["quantize"] == "int8"
    assert set(info["check"]) >= {"float32_accuracy", "accuracy", "accuracy_drop", "changed_answers", "examples"}
    assert (project / "int8" / "model.onnx").stat().st_size < (project / "f32" / "model.onnx").stat().st_size


def test_an_int8_export_that_loses_too_much_is_refused_and_nothing_is_written(project, tf_run):
    from sft.errors import ExportRefused
    from sft.export import export_onnx

    with pytest.raises(ExportRefused, match="drop of .* points over export.max_accuracy_drop") as refused:
        export_onnx(tf_run, project / "refused", quantize=True, max_accuracy_drop=-1.0)
    assert refused.value.exit_code == 9
    assert not (project / "refused").exists()


def test_predict_through_onnx_answers_as_tensorflow_does(project):
    texts = ["I lost my card", "how do I top up", "hello", "thanks, bye"]
    args = ["predict", "--run-dir", project / "run", "--json", *[a for t in texts for a in ("--text", t)]]
    by_tf = [json.loads(line) for line in run(*args).stdout.splitlines()]
    by_onnx = [json.loads(line) for line in run(*args, "--engine", "onnx").stdout.splitlines()]
    assert [a["label"] for a in by_onnx] == [a["label"] for a in by_tf]
    np.testing.assert_allclose([a["confidence"] for a in by_onnx], [a["confidence"] for a in by_tf], atol=1e-5)
    assert (project / "run" / "export" / "best-onnx" / "model.onnx").is_file()  # exported once, into the run


def test_evaluate_names_its_files_by_engine(project):
    metrics = json.loads(run("evaluate", "--run-dir", project / "run", "--engine", "onnx-int8", "--json").stdout)
    assert metrics["engine"] == "onnx-int8" and metrics["split"] == "test-onnx-int8"
    assert (project / "run" / "eval_test-onnx-int8.json").is_file()
    assert (project / "run" / "export" / "best-onnx-int8" / "model.onnx").is_file()


def test_an_onnx_export_is_served_with_tf_servings_signatures(project):
    from starlette.testclient import TestClient

    from sft.exported import ExportedModel, load_export

    saved = ExportedModel(project / "run" / "export" / "best")
    texts = ["hello there", "I lost my card"]
    with TestClient(make_app(lambda: load_export(project / "f32"), max_wait_ms=2)) as client:
        wait_ready(client.get)
        for signature, instances in [("serving_default", texts),
                                     ("classify_dialogue", [{"text": t, "context": "agent: hi"} for t in texts])]:
            rows = client.post("/v1/models/intents:predict",
                               json={"signature_name": signature, "instances": instances}).json()["predictions"]
            columns = {k: [i[k] for i in instances] for k in instances[0]} if isinstance(instances[0], dict) \
                else {"text": instances}
            direct = saved.run_signature(signature, columns)
            assert [r["label"] for r in rows] == [x.decode() for x in direct["label"]]
            np.testing.assert_allclose([r["probabilities"] for r in rows], direct["probabilities"], atol=1e-5)
        bad = client.post("/v1/models/intents:predict", json={"signature_name": "classify_ids", "instances": [
            {"input_word_ids": [1, 99999], "input_mask": [1, 1], "input_type_ids": [0, 0]}]})
        assert bad.status_code == 400 and "99999 is not in [0," in bad.json()["error"]
        answers = client.post("/v1/classify", json={"texts": texts}).json()["answers"]
        assert [a["label"] for a in answers] == [x.decode() for x in saved.run_signature(
            "serving_default", {"text": texts})["label"]]
        assert client.get("/v1/models/intents/metadata").json()["metadata"]["signature_def"]["signature_def"].keys() \
            == saved.signature_defs().keys()


def test_an_engine_without_its_extra_is_a_usage_error(project, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError(name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    result = run("predict", "--run-dir", project / "run", "--text", "hi", "--engine", "onnx", code=2)
    assert "pip install 'sft[onnx]'" in result.stderr
