import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import documented_commands
from emimic.cli import main
from emimic.data.simulate import SimulationSettings, simulate
from emimic.errors import EmimicWarning
from emimic.labels import EMOTIONS
from emimic.training.inference import predict


def test_train_evaluate_predict_end_to_end(make_root, tmp_path, capsys):
    root = make_root(train=32, valid=12, test=6, dims={"vit": 6, "wav2vec2": 10},
                     missing={"vit": [99, 144, 150], "wav2vec2": [99, 147, 150]})  # no features: 99 (valid), 150
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(run), "--max-epochs", "2", "--seed", "1",
                 "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "Validation (12 clips)" in printed.out
    assert "none of the modalities" not in printed.err  # only predict and evaluate warn of featureless clips

    scores = tmp_path / "valid.json"
    assert main(["evaluate", "--run", str(run), "--data", str(root), "--json", str(scores)]) == 0
    assert ("warning: 1 of 12 clip(s) of the 'valid' split have none of the modalities the model reads (vit,"
            " wav2vec2): Filename 99; each is predicted from no input, the same value for all (if they should have"
            " features, extract them, or check the ids of the split CSV).") in capsys.readouterr().err
    payload = json.loads(scores.read_text())
    assert payload["split"] == "valid" and payload["n_clips"] == 12
    assert set(payload["pcc"]) == set(EMOTIONS)
    assert abs(payload["mean_pcc"] - sum(payload["pcc"].values()) / 6) < 1e-9
    provenance = payload["provenance"]  # which run, config, seed and data the figure is of
    assert provenance["runs"] == [{"run": str(run.resolve()), "config": "default", "seed": 1}]
    assert provenance["data"]["root"] == str(root.resolve()) and len(provenance["data"]["fingerprint"]) == 64

    submission = tmp_path / "sub.csv"
    assert main(["predict", "--run", str(run), "--data", str(root), "--out", str(submission)]) == 0
    frame = pd.read_csv(submission)
    assert list(frame.columns) == ["Filename", *EMOTIONS]
    assert frame["Filename"].tolist() == sorted(frame["Filename"]) and len(frame) == 6
    assert frame[list(EMOTIONS)].to_numpy().min() >= 0 and frame[list(EMOTIONS)].to_numpy().max() <= 1
    assert ("warning: 1 of 6 clip(s) of the 'test' split have none of the modalities the model reads (vit,"
            " wav2vec2): Filename 150; each is predicted from no input") in capsys.readouterr().err
    with pytest.warns(EmimicWarning, match=r"Filename 150; each is predicted from no input"):
        predict(run, root)  # a Python submission warns as the command does
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict(run, root, warn_featureless=False)


def test_config_errors_are_one_line(make_root, tmp_path, capsys):
    root = make_root(dims={"vit": 4})
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: 0.01\n  momentum: 0.9\n")
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--config", str(bad)]) == 1
    assert "unknown key 'optim.momentum'" in capsys.readouterr().err


def test_evaluate_without_a_run_is_a_clear_error(make_root, tmp_path, capsys):
    root = make_root(dims={"vit": 4})
    assert main(["evaluate", "--run", str(tmp_path / "nothing"), "--data", str(root)]) == 1
    assert "no checkpoint here" in capsys.readouterr().err


def test_configs_lists_presets_and_registries(capsys):
    assert main(["configs"]) == 0
    printed = capsys.readouterr().out
    assert "paper" in printed and "meanstd" in printed and "concat" in printed


def test_demo_refuses_before_its_first_stage_replaces_the_corpus(tmp_path, capsys):
    """Another --seed without --overwrite, an unknown --config and a report path holding a user's file are all
    refused before stage 1, so the corpus is kept as it was."""
    out = tmp_path / "demo"
    simulate(out / "data", SimulationSettings(clips=12), progress=False)
    settings = out / "data" / ".truth" / "settings.json"

    def refusal(*options: str) -> str:
        assert main(["demo", "--out", str(out), "--clips", "12", "--seed", "5", *options]) == 1
        return " ".join(capsys.readouterr().err.split())

    assert ("holds a simulation with other settings (seed 0 there, 5 here); choose a new --out folder, delete this"
            " one, or pass --overwrite to simulate it anew.") in refusal()
    assert "nosuch" in refusal("--overwrite", "--config", "nosuch")
    (out / "report.html").write_text("<p>my notes</p>")
    assert f"{out / 'report.html'}: exists and is not an emimic report, so it is kept" in refusal("--overwrite")
    assert json.loads(settings.read_text())["seed"] == 0


def test_demo_runs_every_stage_on_a_small_corpus(tmp_path, monkeypatch, capsys):
    """The `emimic demo` of docs/training.md and README.md's `make demo`, on a small corpus; then, as the page says,
    with other settings and --overwrite, which replaces its run and, for another --seed or --clips, its corpus."""
    monkeypatch.chdir(tmp_path)
    ((argv, _),) = documented_commands("training.md", "test_cli_train.py::test_demo_runs_every_stage_on_a_small_corpus")
    assert main([*argv[1:], "--clips", "80", "--max-epochs", "2"]) == 0
    printed = capsys.readouterr().out
    out = Path("runs/demo")
    assert "of the oracle" in printed and "fraction" in printed
    assert (out / "submission.csv").exists() and (out / "run" / "metrics.json").exists()
    assert f"report: {out / 'report.html'}" in printed and "Run run" in (out / "report.html").read_text()
    assert main(["demo", "--out", str(out), "--clips", "40", "--max-epochs", "1", "--seed", "1", "--overwrite"]) == 0
    assert f"1/5 simulate {out / 'data'} anew: replacing the simulation there (clips 80 there, 40 here, seed 0" \
        " there, 1 here)" in " ".join(capsys.readouterr().err.split())
    assert json.loads((out / "data" / ".truth" / "settings.json").read_text())["clips"] == 40
    assert yaml.safe_load((out / "run" / "config.yaml").read_text())["seed"] == 1
