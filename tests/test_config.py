from pathlib import Path

import pytest

from sft.config import Config, load_config
from sft.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_apply_when_no_file_is_given():
    config = load_config(None)
    assert config == Config()
    assert config.train.learning_rate == 5e-5


def test_yaml_then_overrides_in_that_order(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 5\n  learning_rate: 3e-5\nmodel:\n  encoder: /models/bert\n")
    config = load_config(path, ["train.epochs=2", "model.dropout=0.2"])
    assert config.train.epochs == 2  # --set wins over the file
    assert config.train.learning_rate == 3e-5  # YAML 1.1's string "3e-5" read as the number
    assert config.model.encoder == "/models/bert"
    assert config.model.dropout == 0.2


def test_overrides_are_typed_like_yaml_scalars():
    config = load_config(None, ["data.files=[a.csv, b.csv]", "data.columns.dialogue_id=null", "train.seed=7"])
    assert config.data.files == ["a.csv", "b.csv"]
    assert config.data.columns.dialogue_id is None
    assert config.train.seed == 7


def test_data_sections_from_yaml(tmp_path):
    path = write(tmp_path, "data:\n  clean: {mask_urls: true}\n  labels:\n    mapping: {Happy: joy}\n    min_count: 5\n")
    config = load_config(path, ["data.context_speaker=true"])
    assert config.data.clean.mask_urls and config.data.clean.html  # the other steps keep their defaults
    assert config.data.labels.mapping == {"Happy": "joy"} and config.data.labels.min_count == 5
    assert config.data.context_speaker


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config().train.epochs = 9


def test_round_trip_through_yaml(tmp_path):
    config = load_config(None, ["train.epochs=7", "data.files=[x.csv]"])
    assert load_config(write(tmp_path, config.to_yaml())) == config


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  epoch: 3\n", "unknown config key 'train.epoch' (valid keys here: run_dir, epochs,"),
        ("trian: {}\n", "unknown config key 'trian' (valid keys here: data, model, train, fallback, metrics, export, audit, runtime)"),
        ("train:\n  epochs: three\n", "train.epochs: expected an integer, found str 'three'"),
        ("train:\n  epochs: 0\n", "train.epochs: 0 is out of range (must be at least 1)"),
        ("model:\n  dropout: 1.5\n", "model.dropout: 1.5 is out of range (must be between 0.0 and 0.9)"),
        ("train:\n  select_metric: loss\n", "train.select_metric: 'loss' is not a valid choice (choose one of: macro_f1, weighted_f1, accuracy, macro_f1_excluding, micro_f1_excluding)"),
        ("train: 3\n", "train: expected a mapping, found int 3"),
        ("data:\n  clean:\n    html: 1\n", "data.clean.html: expected true or false, found int 1"),
        ("data:\n  clean:\n    lowercase: true\n", "unknown config key 'data.clean.lowercase' (valid keys here: repair_cp1252,"),
        ("data:\n  labels:\n    rare: merge\n", "data.labels.rare: 'merge' is not a valid choice (choose one of: drop, other)"),
        ("data:\n  labels:\n    mapping: [a, b]\n", "data.labels.mapping: expected a mapping, found list"),
        ("data:\n  format: xlsx\n", "data.format: 'xlsx' is not a valid choice (choose one of: auto, csv, tsv, jsonl)"),
        ("- a\n- b\n", "must hold a mapping of sections, found list"),
        ("train:\n  epochs: [1\n", "is not valid YAML (line"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(tmp_path, text, message):
    with pytest.raises(ConfigError, match=None) as error:
        load_config(write(tmp_path, text))
    assert message in str(error.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file .* not found"):
        load_config(tmp_path / "nope.yaml")


def test_malformed_override():
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config(None, ["train.epochs"])


@pytest.mark.parametrize("path", sorted(Path(__file__).parent.parent.glob("configs/*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    load_config(path)
