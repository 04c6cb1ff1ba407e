import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import write_root
from emimic.cli import main
from emimic.data import open_dataset
from emimic.data.groups import group_column
from emimic.errors import ConfigError, DataError, EmimicError
from emimic.training.crossval import (
    assign_folds,
    cross_validate,
    fold_table,
    fold_view,
    pooled_labels,
    refit_epoch_count,
)
from emimic.training.inference import evaluate, predict
from emimic.training.provenance import data_differences

OPTIONS = dict(max_epochs=3, overrides={"optim.batch_size": 16}, progress=False)


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """A root whose split CSVs name a speaker per clip (4 clips each), and its finished 3-fold CV with refit."""
    root = write_root(tmp_path_factory.mktemp("cv") / "data", train=48, valid=16, test=8,
                      dims={"vit": 8, "wav2vec2": 12})
    for name in ("train_split.csv", "valid_split.csv"):
        frame = pd.read_csv(root / name)
        frame["speaker"] = [f"s{clip_id // 12}" for clip_id in frame["Filename"]]
        frame.to_csv(root / name, index=False)
    out = root.parent / "cv"
    return root, out, cross_validate(root, out, folds=3, seeds=[0, 1], refit=True, **OPTIONS)


def test_grouped_folds_cover_train_and_valid_once_and_keep_speakers_together(grouped):
    root, out, result = grouped
    ds = open_dataset(root)
    folds = pd.read_csv(out / "folds.csv", index_col=0)["fold"]
    pooled = pd.concat([ds.split("train"), ds.split("valid")])
    assert sorted(folds.index) == sorted(pooled.index) and set(folds) == {1, 2, 3}
    speakers = ds.meta()["speaker"].reindex(folds.index)
    assert (folds.groupby(speakers).nunique() == 1).all()
    assert result.group_column == "speaker"
    oof = pd.read_csv(out / "oof.csv", index_col=0)
    assert len(oof) == len(pooled) and np.isfinite(oof.to_numpy()).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["oof_mean_pcc"] == pytest.approx(result.mean_pcc)
    assert set(summary["fold_scores"]) == {f"fold{k}-seed{s}" for k in (1, 2, 3) for s in (0, 1)}
    cv_record = json.loads((out / "cv.json").read_text())
    assert summary["provenance"] == {"config": "default", "fold_seed": 0,  # what the figures are of
                                     "data": {"root": str(root.resolve()), "fingerprint": cv_record["data"]}}


def test_oof_predictions_come_from_the_models_that_did_not_train_on_the_clip(grouped):
    root, out, _ = grouped
    ds = open_dataset(root)
    oof = pd.read_csv(out / "oof.csv", index_col=0)
    fold2 = oof.index[oof["fold"] == 2]
    members = [evaluate(out / f"fold2-seed{s}", fold_view(out / f"fold2-seed{s}", ds)) for s in (0, 1)]
    assert all(m.clips.index.equals(fold2) for m in members)  # each fold model is scored on its own fold only
    assert fold_view(out / "fold2-seed0", ds).where == "fold 2: "  # what its warnings begin with
    mean = np.mean([m.clips["pred Joy"].to_numpy() for m in members], axis=0)
    assert oof.loc[fold2, "pred Joy"].to_numpy() == pytest.approx(mean, abs=1e-5)


def test_refit_trains_all_clips_for_the_median_best_epoch(grouped):
    _, out, result = grouped
    assert result.refit_epochs == refit_epoch_count(result.best_epochs)
    stored = json.loads((out / "refit-seed0" / "metrics.json").read_text())
    assert stored["epochs"] == stored["best_epoch"] == result.refit_epochs
    history = pd.read_csv(out / "refit-seed0" / "history.csv")
    assert len(history) == result.refit_epochs  # every epoch ran: no early stop, the last one is kept
    assert yaml.safe_load((out / "refit-seed0" / "config.yaml").read_text())["train"]["selection"] == "last"


def test_each_model_of_a_cv_folder_is_seen_on_the_data_it_was_trained_on(grouped):
    root, out, _ = grouped
    ds = open_dataset(root)
    models = sorted(p.parent for p in out.glob("*/metrics.json"))
    assert {run.name for run in models} >= {"fold1-seed0", "refit-seed0"}
    assert all(data_differences(run, fold_view(run, ds)) == [] for run in models)  # what `report CV` checks
    assert fold_view(out / "refit-seed0", ds).where == "refit: "


def test_predict_with_a_cv_folder_is_the_mean_of_its_models(grouped):
    root, out, _ = grouped
    runs = sorted(p.parent for p in out.glob("*/metrics.json"))
    assert len(runs) == 8  # 3 folds x 2 seeds + 2 refits
    ensemble = predict(out, root, split="test")
    members = [predict(run, root, split="test") for run in runs]
    expected = np.clip(np.mean([m.drop(columns="Filename").to_numpy() for m in members], axis=0), 0, 1)
    assert ensemble.drop(columns="Filename").to_numpy() == pytest.approx(expected, abs=1e-6)
    fold = out / "fold1-seed0"  # given again beside its CV folder, it would weigh twice in the mean
    with pytest.raises(EmimicError, match=rf"^{re.escape(str(fold))}: is given twice \(by {re.escape(str(out))} and"):
        predict([out, fold], root, split="test")
    with pytest.raises(EmimicError, match=rf"^{re.escape(str(fold))}: is given twice, so"):  # not 'by X and by X'
        predict([fold, Path(f"{fold}/")], root, split="test")


def test_a_run_option_given_again_adds_its_runs(grouped, tmp_path, capsys):
    root, out, _ = grouped
    fold = out / "fold1-seed0"
    args = ["--data", str(root), "--run", str(out), "--run", str(fold)]  # not only the last --run
    assert main(["predict", *args, "--out", str(tmp_path / "sub.csv")]) == 1
    expected = f"{fold}: is given twice (by {out} and by {fold})"
    assert "".join(expected.split()) in "".join(capsys.readouterr().err.split())  # the console wraps long lines


def test_rerun_reuses_finished_folds_and_refuses_other_settings(grouped):
    root, out, result = grouped
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.json")}
    again = cross_validate(root, out, folds=3, seeds=[0, 1], refit=True, **OPTIONS)
    assert again.mean_pcc == result.mean_pcc
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.json")} == stamps
    with pytest.raises(ConfigError, match="was made with other folds"):
        cross_validate(root, out, folds=4, seeds=[0], **OPTIONS)
    # too many folds for the speakers: refused before anything is written, so a fixed command can start afresh
    with pytest.raises(DataError, match=r"20 folds need at least 20 groups, but train\+valid has 17; use fewer folds"):
        cross_validate(root, out.parent / "cv-many", folds=20, **OPTIONS)
    assert not (out.parent / "cv-many" / "cv.json").exists()


def test_a_cv_folder_made_from_other_data_is_refused_before_anything_trains(grouped, tmp_path):
    root, out, _ = grouped
    edited, folder = shutil.copytree(root, tmp_path / "data"), shutil.copytree(out, tmp_path / "cv")
    labels = pd.read_csv(edited / "train_split.csv")
    labels.loc[0, "Joy"] = 1.0 - labels.loc[0, "Joy"]
    labels.to_csv(edited / "train_split.csv", index=False)
    with pytest.raises(ConfigError, match=rf"{folder} was made with other data \(see {folder / 'cv.json'}\); rerun"
                                          " it with the same options, pass --overwrite to replace it"):
        cross_validate(edited, folder, folds=3, seeds=[0, 1], refit=True, **OPTIONS)


def test_a_rerun_may_add_seeds_but_not_drop_the_models_of_one(grouped, tmp_path):
    root, out, _ = grouped
    folder = shutil.copytree(out, tmp_path / "cv")
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=rf"^{folder} holds the models of seed\(s\) 1 too, which `predict --run"
                                          rf" {folder}` would average in, so seeds may be added but not dropped; rerun"
                                          " it with --seeds 0 1, pass --overwrite to replace it, or choose a new"
                                          " --out.$"):
        cross_validate(root, folder, folds=3, seeds=[0], refit=True, **OPTIONS)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == stamps


def test_a_seed_binds_only_through_models_that_saved_an_epoch(grouped, tmp_path):
    root, out, _ = grouped
    folder = shutil.copytree(out, tmp_path / "cv")
    shutil.rmtree(folder / "fold1-seed1" / "checkpoints")  # as a start killed before its first epoch was saved
    for run in ("fold2-seed1", "fold3-seed1", "refit-seed1"):  # never started, or deleted by the user
        shutil.rmtree(folder / run)
    again = cross_validate(root, folder, folds=3, seeds=[0], **OPTIONS)
    assert again.seeds == [0] and json.loads((folder / "summary.json").read_text())["seeds"] == [0]


def test_a_refit_of_other_epochs_is_refused_before_any_refit_trains_and_replaced_with_overwrite(
        grouped, tmp_path, monkeypatch):
    root, out, result = grouped
    folder = shutil.copytree(out, tmp_path / "cv")
    moved = result.refit_epochs % OPTIONS["max_epochs"] + 1  # as when added seeds move the median best epoch
    monkeypatch.setattr("emimic.training.crossval.refit_epoch_count", lambda best_epochs: moved)
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("*-seed*/**/*") if p.is_file()}  # every model's files
    with pytest.raises(ConfigError, match=rf"^{folder / 'refit-seed0'} holds a refit made otherwise \(train.max_epochs"
                                          rf" was {result.refit_epochs}, now {moved}\), and the folds now choose"
                                          rf" {moved} epochs .*; pass --overwrite to refit it again \(the fold models"
                                          r" are kept\), or choose a new --out\.$"):
        cross_validate(root, folder, folds=3, seeds=[0, 1], refit=True, **OPTIONS)
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*-seed*/**/*") if p.is_file()} == stamps  # no refit ran
    assert cross_validate(root, folder, folds=3, seeds=[0, 1], refit=True, overwrite=True, **OPTIONS).refit_epochs \
        == moved
    for seed in (0, 1):
        assert yaml.safe_load((folder / f"refit-seed{seed}" / "config.yaml").read_text())["train"]["max_epochs"] \
            == moved
    fold_files = [p for p in stamps if p.relative_to(folder).parts[0].startswith("fold")]
    assert all(p.stat().st_mtime_ns == stamps[p] for p in fold_files)  # the fold models are kept


def test_a_refused_refit_says_why_and_leaves_the_summary_in_step_with_the_folds(grouped, tmp_path):
    root, out, _ = grouped
    folder = shutil.copytree(out, tmp_path / "cv")
    (folder / "refit-seed0" / "run.json").write_text("{broken", encoding="utf-8")
    (folder / "summary.json").write_text("{}", encoding="utf-8")  # what the refusal must not leave as it was
    # no word of the folds' epochs: they are not what differs
    damaged = folder / "refit-seed0" / "run.json"
    with pytest.raises(ConfigError, match=rf"^{damaged.parent} holds a refit made otherwise \({damaged}: cannot be read"
                                          r" as the record of a run \(.*\)\); pass --overwrite to refit it again"
                                          r" \(the fold models are kept\), or choose a new --out\.$") as refused:
        cross_validate(root, folder, folds=3, seeds=[0, 1], refit=True, **OPTIONS)
    assert "epochs" not in str(refused.value)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["refit_epochs"] is None and summary["refit_runs"] == []
    assert summary["oof_mean_pcc"] == pytest.approx(grouped[2].mean_pcc)


def test_every_fold_and_refit_model_has_the_members_auto_gives_a_fold(grouped, tmp_path, monkeypatch):
    root, _, _ = grouped
    # 64 clips in 3 folds: a fold model trains on 42, the refit on 64; auto gives 2 members below 50 clips here
    monkeypatch.setattr("emimic.models.ensemble.AUTO_MEMBERS", ((50, 2),))
    out = tmp_path / "cv"
    cross_validate(root, out, folds=3, seeds=[0], refit=True, max_epochs=1, progress=False,
                   overrides={"optim.batch_size": 16, "model.members": "auto"})
    members = {run.name: yaml.safe_load((run / "config.yaml").read_text())["model"]["members"]
               for run in out.glob("*-seed0")}
    assert members == {"fold1-seed0": 2, "fold2-seed0": 2, "fold3-seed0": 2, "refit-seed0": 2}
    assert json.loads((out / "cv.json").read_text())["config"]["model"]["members"] == 2


def test_a_config_holding_out_a_valid_share_is_folded_as_it_is_without_one(make_root, tmp_path):
    """The config that trains on a corpus without valid_split.csv (train.valid_fraction) failed every fold model
    with 'has a valid_split.csv, so --valid-fraction does not apply': a fold validates on its fold instead."""
    root = make_root(train=24, valid=0)
    (root / "valid_split.csv").unlink()
    result = cross_validate(root, tmp_path / "cv", folds=2, max_epochs=1, progress=False,
                            overrides={"train.valid_fraction": 0.25})
    assert set(result.fold_scores) == {"fold1-seed0", "fold2-seed0"}
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["config"]["train"]["valid_fraction"] is None


def test_a_group_column_must_name_every_clip(make_root, tmp_path):
    root = make_root(train=8, valid=4, test=2, dims={"vit": 4})
    frame = pd.read_csv(root / "train_split.csv")
    frame["speaker"] = "s1"
    frame.to_csv(root / "train_split.csv", index=False)
    with pytest.raises(DataError, match="group column 'speaker' is empty or absent for 4 clip"):
        cross_validate(root, tmp_path / "cv", folds=2, **OPTIONS)


def test_the_group_column_is_read_from_train_and_valid_only(make_root, tmp_path):
    """A 'group' column in test_split.csv only was taken before train's and valid's 'speaker' (it comes first), so cv
    refused every folded clip as groupless while --valid-fraction held out whole speakers."""
    root = make_root(train=8, valid=4, test=2, dims={"vit": 4})
    for split in ("train", "valid", "test"):
        frame = pd.read_csv(root / f"{split}_split.csv")
        frame["group" if split == "test" else "speaker"] = [f"s{i % 3}" for i in range(len(frame))]
        frame.to_csv(root / f"{split}_split.csv", index=False)
    ds = open_dataset(root)
    assert group_column(ds.layout.split_files) == "speaker"
    folds = fold_table(tmp_path, pooled_labels(ds), ds.layout.split_files, 2, 0)
    speaker = ds.meta()["speaker"][folds.index]
    assert (folds.groupby(speaker).nunique() == 1).all()  # each speaker in one fold


def test_clips_in_both_train_and_valid_are_refused_before_any_fold_trains(make_root, tmp_path):
    root = make_root(train=8, valid=4, test=2, dims={"vit": 4})
    rows = (root / "train_split.csv").read_text().splitlines()[1:4]  # clips 3, 6 and 9
    with open(root / "valid_split.csv", "a") as handle:
        handle.write("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"clips 3, 6, 9 are in both train_split\.csv and valid_split\.csv; a clip may"):
        cross_validate(root, tmp_path / "cv", folds=2, **OPTIONS)
    # before the store is packed: a fold that happens to hold both copies would train, and fail only after all did
    assert not (tmp_path / "cv").exists() and not (root / ".emimic").exists()


def test_a_corpus_of_test_clips_only_has_nothing_to_fold(make_root, tmp_path):
    root = make_root(train=8, valid=4, test=2, dims={"vit": 4})
    for split in ("train", "valid"):
        (root / f"{split}_split.csv").unlink()
    with pytest.raises(DataError, match=r": has neither train_split\.csv nor valid_split\.csv, so there are no"):
        cross_validate(root, tmp_path / "cv", folds=2, **OPTIONS)
    assert not (tmp_path / "cv").exists()


def test_refit_epochs_are_the_median_best_epoch():
    assert refit_epoch_count([2, 9, 5]) == 5
    assert refit_epoch_count([4, 7, 30, 6]) == 6  # round(6.5) = 6: one late fold does not drag it up
    assert refit_epoch_count([0, 0, 1]) == 1


def test_ungrouped_folds_are_seeded_and_balanced():
    ids = np.arange(100)
    first, again = assign_folds(ids, None, 5, seed=3), assign_folds(ids, None, 5, seed=3)
    assert (first == again).all() and np.bincount(first)[1:].tolist() == [20] * 5
    assert not (assign_folds(ids, None, 5, seed=4) == first).all()


def test_cli_cv_jobs_and_ensemble_predict(tmp_path, capsys):
    root = write_root(tmp_path / "data", train=24, valid=8, test=4, dims={"vit": 4})
    assert main(["cv", "--data", str(root), "--folds", "2", "--out", str(tmp_path / "cv"), "--max-epochs", "2",
                 "--jobs", "2", "--quiet"]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps long titles
    assert "Out-of-fold PCC: 2 folds, not grouped, 1 seed(s)" in printed and "fold2-seed0" in printed
    sub = tmp_path / "sub.csv"
    assert main(["predict", "--run", str(tmp_path / "cv"), "--data", str(root), "--out", str(sub)]) == 0
    assert len(pd.read_csv(sub)) == 4


DOCS_MARK = "<!-- executed by tests/test_training_crossval.py::test_docs_options_example -->"


def test_docs_options_example(tmp_path, monkeypatch):
    text = (Path(__file__).parents[1] / "docs" / "training.md").read_text(encoding="utf-8").split(DOCS_MARK, 1)[1]
    config = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    commands = text.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "winners.yaml").write_text(config)
    for line in commands:
        argv = shlex.split(line.partition("#")[0])
        assert argv[0] == "emimic" and main(argv[1:]) == 0, line
    resolved = yaml.safe_load((tmp_path / "runs" / "winners" / "config.yaml").read_text())
    assert resolved["loss"]["sample_weights"] == "sqrt_raters" and resolved["train"]["ema"]["warmup"] == "linear"
    assert len(pd.read_csv(tmp_path / "runs" / "cv-votes.csv")) > 0
