import pandas as pd
import pytest

from emimic.config import ExperimentConfig, config_to_yaml, list_presets, load_config, read_yaml_mapping, with_overrides
from emimic.defaults import DEFAULT_PRESET
from emimic.errors import ConfigError


def flat(cfg: ExperimentConfig) -> dict[str, object]:
    """Every setting under its dotted key."""
    return pd.json_normalize(cfg.model_dump(mode="json"), sep=".").iloc[0].to_dict()


def test_paper_preset_is_the_schema_defaults():
    cfg = load_config("paper")
    assert cfg.model_dump(exclude={"description"}) == ExperimentConfig().model_dump(exclude={"description"})
    assert cfg.model.fusion == "concat" and cfg.train.ema.enabled and cfg.model.vad.enabled


def test_without_a_config_the_default_preset_is_the_paper_method_sized_for_small_corpora():
    cfg = load_config()
    assert cfg.name == DEFAULT_PRESET == "default"
    changed = {key for key, value in flat(cfg).items() if flat(ExperimentConfig())[key] != value}
    assert changed == {"name", "description", "optim.batch_size", "model.branch.hidden", "model.head.hidden",
                       "model.members"}


@pytest.mark.parametrize("preset", sorted(list_presets()))
def test_every_preset_loads(preset):
    assert load_config(preset).name == preset


def test_unknown_key_names_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  encoder:\n    nmae: gru\n")
    with pytest.raises(ConfigError, match=r"unknown key 'model\.encoder\.nmae'"):
        load_config(path)


def test_unknown_registry_name_lists_the_choices():
    with pytest.raises(ConfigError, match="unknown encoder 'lstm'; available: attentive, gru, meanstd, transformer"):
        load_config(overrides={"model.encoder.name": "lstm"})


def test_bad_value_is_reported_with_its_key():
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        load_config(overrides={"optim.lr": -1})


def test_missing_preset_and_non_mapping_yaml(tmp_path):
    with pytest.raises(ConfigError, match="presets: "):
        load_config("no_such_preset")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_overrides_and_yaml_round_trip(tmp_path):
    cfg = with_overrides(load_config(), {"train.max_epochs": 3, "seed": 7})
    assert cfg.train.max_epochs == 3 and cfg.seed == 7
    path = tmp_path / "cfg.yaml"
    path.write_text(config_to_yaml(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize(("text", "key", "lines"), [
    ("model:\n  members: 1\noptim:\n  lr: 0.1\nmodel:\n  members: 3\n", "model", "1 and 5"),
    ("loss:\n  terms:\n    mse: 1\n    mse: 2\n", "mse", "3 and 4"),
])
def test_a_key_given_twice_is_refused_not_overwritten(tmp_path, text, key, lines):
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"key '{key}' is given twice in one mapping \(lines {lines}\), and YAML"):
        load_config(path)


@pytest.mark.parametrize("content", [b"train:\n  2020-02-30: 1\n", b"optim:\n  lr: 0.1 # \xe9t\xe9\n"])
def test_a_date_no_calendar_has_or_bytes_not_utf8_are_not_valid_yaml(tmp_path, content):
    path = tmp_path / "odd.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"odd\.yaml: is not valid YAML \(.*(day is out of range|utf-8)"):
        load_config(path)


@pytest.mark.parametrize(("text", "loaded"), [
    ("on: 1\n'on': 2\n", {True: 1, "on": 2}),
    ("1: a\n'1': b\n", {1: "a", "1": "b"}),
    ("x: &x {a: 1}\ny: &y {b: 2}\nz:\n  <<: *x\n  <<: *y\n", {"x": {"a": 1}, "y": {"b": 2}, "z": {"a": 1, "b": 2}}),
])
def test_keys_that_only_look_alike_and_several_merge_keys_are_not_given_twice(tmp_path, text, loaded):
    path = tmp_path / "alike.yaml"
    path.write_text(text)
    assert read_yaml_mapping(path, what="a YAML file", holds="keys") == loaded


@pytest.mark.parametrize(("text", "first", "second"), [
    ("on: 1\ntrue: 2\n", "on", "true"),  # both load as True: YAML would keep only the last
    ("true: 1\n1: 2\n", "true", "1"),  # True and 1 are one key of a Python dict
])
def test_keys_yaml_loads_as_one_value_are_given_twice_named_as_written(tmp_path, text, first, second):
    path = tmp_path / "same.yaml"
    path.write_text(text)
    expected = (f"{path}: key '{first}' (line 1) is given twice in one mapping, the second time as '{second}' (line 2),"
                " which YAML reads as the same key, and YAML would keep only the last; keep one of them.")
    with pytest.raises(ConfigError) as refused:
        read_yaml_mapping(path, what="a YAML file", holds="keys")
    assert str(refused.value) == expected


def test_anchors_and_merge_keys_may_override_what_they_merge(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("model:\n  branch: &mlp\n    hidden: 32\n    dropout: 0.2\n"
                    "  head:\n    <<: *mlp\n    dropout: 0.4\n")
    cfg = load_config(path)
    assert (cfg.model.branch.hidden, cfg.model.head.hidden, cfg.model.head.dropout) == (32, 32, 0.4)


@pytest.mark.parametrize(("key", "value"), [("optim.lr", ".inf"), ("loss.terms", "{mse: .nan}"),
                                            ("train.ema.decay", ".nan")])
def test_nan_and_inf_settings_are_refused_by_key(tmp_path, key, value):
    section, leaf = key.rsplit(".", 1)
    path = tmp_path / "nonfinite.yaml"
    path.write_text("".join(f"{'  ' * depth}{part}:\n" for depth, part in enumerate(section.split(".")))
                    + f"{'  ' * (section.count('.') + 1)}{leaf}: {value}\n")
    with pytest.raises(ConfigError, match=rf"{key}.*finite number"):
        load_config(path)


def test_an_empty_modality_list_says_to_leave_the_key_out():
    with pytest.raises(ConfigError, match=r"model\.modalities: name at least one modality, or leave the key out"):
        load_config(overrides={"model.modalities": []})


def test_a_modality_named_twice_is_refused_not_a_crash_in_training():
    with pytest.raises(ConfigError, match=r"model\.modalities: 'vit' named more than once; name each modality once"):
        load_config(overrides={"model.modalities": ["vit", "wav2vec2", "vit"]})


def test_a_preset_named_as_a_file_says_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no paper.yaml here
    with pytest.raises(ConfigError, match=r"paper\.yaml: no such file; the packaged preset is named 'paper', without"):
        load_config("paper.yaml")


def test_transformer_heads_must_divide_its_width_and_other_encoders_ignore_heads():
    with pytest.raises(ConfigError, match=r"model\.encoder: the transformer encoder's hidden 30 is not a multiple of"
                                          r" heads 4; change one of them"):
        load_config(overrides={"model.encoder.name": "transformer", "model.encoder.hidden": 30})
    assert load_config(overrides={"model.encoder.name": "gru", "model.encoder.hidden": 30}).model.encoder.heads == 4
