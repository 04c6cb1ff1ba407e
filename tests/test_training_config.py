import pytest

from emimic.config import config_to_yaml, list_presets, load_config, with_overrides
from emimic.errors import ConfigError


def test_paper_preset_is_the_schema_defaults():
    cfg = load_config()
    assert cfg.name == "paper"
    assert cfg.model.fusion == "concat" and cfg.train.ema.enabled and cfg.model.vad.enabled
    assert "paper" in list_presets()


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
