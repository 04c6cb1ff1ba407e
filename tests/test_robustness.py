"""Messy but plausible inputs from new users: each is one clear error naming what to fix, or just works."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import pickle
import re
import shutil
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch

import emimic.outputs
import emimic.training.crossval
import emimic.training.run
from emimic.cli import main
from emimic.config import ExperimentConfig
from emimic.data.dataset import ModalityStats, feature_statistics, open_dataset
from emimic.data.layout import discover
from emimic.data.store import FeatureStore, pack
from emimic.data.validate import validate
from emimic.errors import ConfigError, DataError, EmimicWarning, IncompatibleRun, OutputConflict
from emimic.features import extract
from emimic.labels import EMOTIONS, read_meta, read_split
from emimic.outputs import UnlockedWarning, exclusive_output
from emimic.training.crossval import FoldJob, assign_folds, cross_validate, split_view
from emimic.training.inference import evaluate
from emimic.training.run import read_metrics, train
from test_cli_errors import assert_one_sentence, run_cli


def problems(root: Path) -> dict[str, str]:
    """``{message: severity}`` of everything ``validate`` finds under ``root``."""
    return {p.message: p.severity for p in validate(root, progress=False).problems}


def keep_rows(path: Path, rows: int) -> None:
    """Cut a split CSV down to its header and first ``rows`` clips."""
    pd.read_csv(path).head(rows).to_csv(path, index=False)


# -- split CSVs with too few clips ---------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "valid"])
def test_a_header_only_training_split_is_refused_by_validate_and_train_alike(split, make_root, tmp_path,
                                                                              capsys) -> None:
    root = make_root()
    keep_rows(root / f"{split}_split.csv", 0)
    sentence = f"{root}/{split}_split.csv: lists no clips (only a header); add the split's clips or remove the file."
    assert problems(root)[sentence] == "error"
    code, err = run_cli(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--quiet"], capsys)
    assert_one_sentence(code, err, sentence.rstrip("."))
    assert not (tmp_path / "run").exists() and not (root / ".emimic").exists()  # refused before packing


def test_a_header_only_test_split_is_a_warning_and_predict_writes_no_empty_submission(trained_run,
                                                                                      simulated_root, tmp_path,
                                                                                      capsys) -> None:
    root = shutil.copytree(simulated_root, tmp_path / "corpus", ignore=shutil.ignore_patterns(".emimic"))
    (root / "test_split.csv").write_text("Filename\n")
    assert problems(root)[f"{root / 'test_split.csv'}: lists no clips (only a header); add the split's clips or"
                          " remove the file."] == "warning"
    out = tmp_path / "submission.csv"
    code, err = run_cli(["predict", "--run", str(trained_run.run), "--data", str(root), "--out", str(out)], capsys)
    assert_one_sentence(code, err, "test_split.csv: lists no clips")
    assert not out.exists()


def test_a_one_clip_valid_split_cannot_select_an_epoch_nor_be_scored(make_root, tmp_path, capsys) -> None:
    one = make_root("one", valid=1)
    sentence = f"{one}: the validation split has 1 clip(s), but a PCC needs at least 2; add clips to valid_split.csv."
    assert problems(one)[sentence] == "error"
    last = tmp_path / "last.yaml"
    last.write_text("name: last\ntrain:\n  selection: last\n")
    for config in ("default", str(last)):  # a `last` run is scored on it too, once trained: refused before
        code, err = run_cli(["train", "--data", str(one), "--out", str(tmp_path / "run"), "--quiet",
                             "--config", config], capsys)
        assert_one_sentence(code, err, sentence.rstrip("."))
    assert not (one / ".emimic").exists()  # refused before the store is packed
    two = make_root("two", valid=2)  # two clips have a PCC: validate, train and evaluate all work
    assert not any("validation split" in message for message in problems(two))
    assert main(["train", "--data", str(two), "--out", str(tmp_path / "run"), "--max-epochs", "1", "--quiet"]) == 0
    assert main(["evaluate", "--run", str(tmp_path / "run"), "--data", str(two)]) == 0
    capsys.readouterr()
    code, err = run_cli(["evaluate", "--run", str(tmp_path / "run"), "--data", str(one)], capsys)
    assert_one_sentence(code, err, f"{one}: the 'valid' split has 1 clip(s), but a PCC needs at least 2; evaluate a"
                                   " larger split")


def set_labels(path: Path, **values: float) -> None:
    """Give every clip of the split CSV ``path`` the labels ``values`` ({column: value}; ``Empathic_Pain`` for
    Empathic Pain)."""
    table = pd.read_csv(path)
    for column, value in values.items():
        table[column.replace("_", " ")] = value
    table.to_csv(path, index=False)


def test_a_label_column_constant_over_a_split_is_named_where_its_pcc_would_be_a_silent_zero(
        trained_run, simulated_root, tmp_path, capsys) -> None:
    root = shutil.copytree(simulated_root, tmp_path / "corpus", ignore=shutil.ignore_patterns(".emimic"))
    set_labels(root / "valid_split.csv", Joy=0.0)
    set_labels(root / "train_split.csv", Amusement=0.25)
    n_valid, n_train = len(pd.read_csv(root / "valid_split.csv")), len(pd.read_csv(root / "train_split.csv"))
    scored = (f"{root}: the labels of Joy are constant over the {n_valid} clips of the 'valid' split (Joy 0), so its"
              " PCC is undefined: it is shown as 0 and counts as 0 in the mean PCC.")
    learnt = (f"{root}: the labels of Amusement are constant over the {n_train} clips of the 'train' split (Amusement"
              " 0.25), so the model can learn nothing of it but that value.")
    assert problems(root) == {scored: "warning", learnt: "warning"}
    with pytest.warns(EmimicWarning, match=f"^{re.escape(scored)}$"):  # validate's sentence, word for word
        assert evaluate(trained_run.run, root).pcc["Joy"] == 0.0
    # a CV fold says which: each distinct warning is printed once per command, and the folds' ones would read alike
    train_ids, valid_ids = (pd.read_csv(root / f"{split}_split.csv").Filename for split in ("train", "valid"))
    fold = split_view(open_dataset(root), train_ids, valid_ids, view="fold 2")
    with pytest.warns(EmimicWarning, match=f"^fold 2: {re.escape(scored)}$"):
        evaluate(trained_run.run, fold)
    set_labels(root / "valid_split.csv", **dict.fromkeys(["Admiration", "Amusement", "Determination", "Empathic_Pain",
                                                            "Excitement"], 0.5))
    never = (f"{root}: the labels of every emotion are constant over the {n_valid} clips of the validation split, so no"
             " PCC exists to select the best epoch on; use a split whose labels vary.")
    assert problems(root)[never] == "error"
    code, err = run_cli(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--quiet"], capsys)
    assert_one_sentence(code, err, never.rstrip("."))
    with pytest.raises(DataError, match=r"constant over the \d+ clips of the .valid. split, so no PCC exists to score"):
        evaluate(trained_run.run, root)
    fold = split_view(open_dataset(root), train_ids, valid_ids, view="fold 2")  # evaluate's refusals name it alike
    with pytest.raises(DataError, match=rf"^fold 2: {re.escape(str(root))}: the labels of every emotion are constant"):
        evaluate(trained_run.run, fold)


def test_a_held_out_valid_split_too_small_asks_for_a_larger_fraction(make_root, tmp_path, capsys) -> None:
    root = make_root(train=10)
    (root / "valid_split.csv").unlink()
    sentence = f"{root}: the validation split has 1 clip(s), but a PCC needs at least 2; use a larger --valid-fraction."
    assert {p.message for p in validate(root, valid_fraction=0.1, progress=False).problems} >= {sentence}
    code, err = run_cli(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--valid-fraction", "0.1",
                         "--quiet"], capsys)
    assert_one_sentence(code, err, sentence.rstrip("."))


def test_cv_refuses_folds_of_one_clip_before_any_model_trains(make_root, tmp_path, capsys) -> None:
    root = make_root(train=3, valid=2)  # 3 folds of 5 clips: 2, 2 and 1
    code, err = run_cli(["cv", "--data", str(root), "--folds", "3", "--out", str(tmp_path / "cv"), "--quiet"], capsys)
    assert_one_sentence(code, err, "3 folds leave 1 clip(s) in fold", "needs at least 2; use fewer folds")
    assert not (tmp_path / "cv").exists()
    uneven = assign_folds(np.arange(6), np.array(["a", "a", "a", "a", "b", "c"]), 2, seed=0)  # groups: 4 + 2 clips
    assert sorted(np.bincount(uneven)[1:]) == [2, 4]
    with pytest.raises(DataError, match=r"3 folds leave 1 clip\(s\) in fold"):
        assign_folds(np.arange(6), np.array(["a", "a", "a", "a", "b", "c"]), 3, seed=0)


def test_cv_of_a_single_group_asks_for_groups_not_fewer_folds() -> None:
    """Two folds are the fewest: with one group, 'use fewer folds' cannot be followed."""
    with pytest.raises(DataError, match=r"^2 folds need at least 2 groups, but train\+valid has 1; give the clips at"
                                        r" least 2 groups, or remove the group column to fold them one by one\.$"):
        assign_folds(np.arange(6), np.array(["g"] * 6), 2, seed=0)


def test_a_cv_refit_scores_on_fold_one_when_the_valid_split_is_too_small(make_root, tmp_path) -> None:
    root = make_root(train=8, valid=1)  # the folds pool the one valid clip with train; the refit trains on all 9
    result = cross_validate(root, tmp_path / "cv", folds=2, refit=True, max_epochs=1, progress=False)
    folds = pd.read_csv(tmp_path / "cv" / "folds.csv", index_col=0)["fold"]
    refit = json.loads((tmp_path / "cv" / "refit-seed0" / "metrics.json").read_text())
    assert result.refit_runs and refit["n_clips"] == (folds == 1).sum()


# -- values that overflow: never a score, a submission or a store of NaN ------------------------------------------


def test_float16_packing_refuses_features_beyond_its_range(make_root) -> None:
    root = make_root()
    path = root / "vit" / "00006.pkl"
    path.write_bytes(pickle.dumps(np.full((4, 8), 7e4, dtype=np.float32)))  # float16 stops at 65504
    with pytest.raises(DataError, match=r"00006\.pkl: holds values up to 7e\+04, beyond the float16 range.*--dtype"
                                        r" float32"):
        pack(root, dtype="float16", progress=False)
    assert FeatureStore.open(pack(root, dtype="float32", progress=False).store_dir).frames("vit", 6).max() == 7e4


def test_float16_packing_judges_tiny_values_by_their_harm_to_the_column_not_per_clip(make_root) -> None:
    root, rng = make_root(dims={"vit": 1, "wav2vec2": 8}), np.random.default_rng(0)
    for path in (root / "vit").glob("*.pkl"):
        frames = pickle.loads(path.read_bytes())
        # a probability near 0 in 60 % of the frames (most values of each clip below float16's smallest normal)
        frames[:, 0] = np.where(rng.random(len(frames)) < 0.4, rng.uniform(0.05, 0.9, len(frames)),
                                rng.uniform(2e-6, 5e-5, len(frames)))
        path.write_bytes(pickle.dumps(frames))
    path = root / "wav2vec2" / "00006.pkl"
    path.write_bytes(pickle.dumps(pickle.loads(path.read_bytes()) * 1e-9))  # one clip of 1e-9 among ordinary ones
    store = FeatureStore.open(pack(root, dtype="float16", progress=False).store_dir)
    assert store.frames("vit", 6).any()


def test_float16_packing_refuses_a_column_it_would_turn_into_zeros_in_every_clip(make_root) -> None:
    root, rng = make_root(), np.random.default_rng(0)
    for path in (root / "vit").glob("*.pkl"):
        frames = pickle.loads(path.read_bytes())
        frames[:, 5] *= 1e-9  # one feature of 1e-9 scale among ordinary ones: every clip passes on its own
        # a probability near 0 in most frames: tiny values that float16 rounds by 0.02% of its spread, as any feature
        frames[:, 6] = np.where(rng.random(len(frames)) < 0.4, rng.uniform(0.05, 0.9, len(frames)),
                                rng.uniform(2e-6, 5e-5, len(frames)))
        frames[:, 7] = 0.1  # constant: float16 shifts every value alike, which standardising removes
        # constant for training too (column_scales): a 1-ulp float32 jitter that float16 rounds away
        frames[:, 4] = np.where(rng.random(len(frames)) < 0.5, np.float32(0.7),
                                np.nextafter(np.float32(0.7), np.float32(1)))
        path.write_bytes(pickle.dumps(frames))
    with pytest.raises(DataError, match=rf"^{re.escape(str(root / 'vit'))}: float16 would round column 5 \(of 8,"
                                        r" counting from 0\) of modality 'vit' by 100% of its standard deviation over"
                                        r" all clips \(at most 10% is kept as float16\); pack this dataset with --dtype"
                                        r" float32\.$"):
        pack(root, dtype="float16", progress=False)
    assert FeatureStore.open(pack(root, dtype="float32", progress=False).store_dir).frames("vit", 6)[:, 5].any()
    for path in (root / "vit").glob("*.pkl"):
        frames = pickle.loads(path.read_bytes())
        frames[:, 5] *= 1e9
        path.write_bytes(pickle.dumps(frames))
    pack(root, dtype="float16", progress=False)  # columns 4, 6 and 7 are kept


def test_float32_refuses_wider_columns_it_would_round_and_validate_says_so(make_root) -> None:
    """float64 and int64 features are cast to float32, which emimic computes in: judged per column over all clips as
    float16 is, by pack (so by train) and validate alike, and refused with what to do rather than trained on blurred."""
    root, rng = make_root(dims={"vit": 4, "wav2vec2": 3}), np.random.default_rng(0)
    for path in (root / "vit").glob("*.pkl"):
        frames = pickle.loads(path.read_bytes()).astype(np.float64)
        frames[:, 1] += 1e8  # float32 steps of 8 where the column varies by about 1
        frames[:, 2] += 1e3  # steps of 6e-5: kept
        path.write_bytes(pickle.dumps(frames))
    for path in (root / "wav2vec2").glob("*.pkl"):
        stamps = rng.integers(0, 100, (len(pickle.loads(path.read_bytes())), 3))
        stamps[:, 0] += 2**28  # int64 timestamps past 2^24: float32 keeps every 32nd
        path.write_bytes(pickle.dumps(stamps))
    advice = (r" \(at most 10% is accepted\); subtract each such column's offset \(its mean over all clips, say\) or"
              r" rescale it before saving the features\.$")
    sentence = (r": float32, the precision emimic computes in, would round column {} \(of {}, counting from 0\) of"
                r" modality '{}' by \d+% of its standard deviation over all clips" + advice)
    with pytest.raises(DataError, match=f"^{re.escape(str(root / 'vit'))}{sentence.format(1, 4, 'vit')}"):
        pack(root, progress=False)
    vit, wav2vec2 = (p.message for p in validate(root, progress=False).errors)  # every modality, as given
    assert re.match(f"vit{sentence.format(1, 4, 'vit')}", vit)
    assert re.match(f"wav2vec2{sentence.format(0, 3, 'wav2vec2')}", wav2vec2)
    for folder, column, offset in (("vit", 1, 1e8), ("wav2vec2", 0, 2**28)):
        for path in (root / folder).glob("*.pkl"):
            frames = pickle.loads(path.read_bytes())
            frames[:, column] -= offset
            path.write_bytes(pickle.dumps(frames))
    assert validate(root, progress=False).ok
    pack(root, progress=False)


def test_a_modality_no_training_clip_has_is_left_out_with_a_warning(make_root, tmp_path) -> None:
    """Its branch would never learn, and its untrained encoder would feed the valid and test clips noise."""
    root = make_root(dims={"vit": 8, "egemaps": 5}, missing={"egemaps": [3 * i for i in range(1, 13)]})  # train ids
    sentence = ("modality 'egemaps' has no file for any of the 12 training clips, so no branch can learn from it:"
                " train leaves it out; add its features for training clips to use it.")
    assert problems(root)[sentence] == "warning"
    # the paper's VAD prior was to sit on the acoustic branch, egemaps here: leaving it out turned the prior off
    prior_off = r"; the VAD prior \(model\.vad\), which it carried, is off\.$"
    with pytest.warns(EmimicWarning, match=f"^{re.escape(sentence[:-1])}{prior_off}"):
        result = train(root, tmp_path / "run", config="paper", max_epochs=1, progress=False)
    assert list(result.valid.coverage) == ["vit"]
    with pytest.raises(ConfigError, match=r"^model\.modalities: modality 'egemaps' has no file for any of the 12"
                                          r" training clips.*: remove it from model\.modalities, or add"):
        train(root, tmp_path / "named", config="paper", max_epochs=1, progress=False,
              overrides={"model.modalities": ["vit", "egemaps"]})


def test_cv_naming_a_modality_a_fold_cannot_train_on_is_refused_before_any_fold_trains(make_root, tmp_path) -> None:
    """It used to fail after the other folds had trained."""
    root = make_root(dims={"vit": 8, "egemaps": 5}, missing={"egemaps": [3 * i for i in range(2, 19)]})  # clip 3 has it
    with pytest.raises(ConfigError, match=r"^fold \d: model\.modalities: modality 'egemaps' has no file for any of the"
                                          r" 9 training clips, .*: remove it from model\.modalities, or add"):
        cross_validate(root, tmp_path / "cv", folds=2, max_epochs=1, progress=False,
                       overrides={"model.modalities": ["vit", "egemaps"]})
    assert not (tmp_path / "cv").exists()


def test_a_refusal_about_the_clips_of_a_cv_fold_says_which_fold(make_root, tmp_path) -> None:
    """train refuses in the words of a fold's view wherever it checks (the CV's comparison of a fold's run folder
    with a started run named no fold); the refit's view is 'refit'."""
    root = make_root(dims={"vit": 8, "egemaps": 5}, missing={"egemaps": [3 * i for i in range(1, 13)]})  # train ids
    train_ids, valid_ids = (pd.read_csv(root / f"{split}_split.csv").Filename for split in ("train", "valid"))
    fold = split_view(open_dataset(root), train_ids, valid_ids, view="fold 2")
    with pytest.raises(ConfigError, match=r"^fold 2: model\.modalities: modality 'egemaps' has no file for any of the"
                                          r" 12 training clips"):
        train(fold, tmp_path / "run", max_epochs=1, progress=False, overrides={"model.modalities": ["vit", "egemaps"]})
    set_labels(root / "valid_split.csv", **{e.replace(" ", "_"): 0.5 for e in EMOTIONS})
    fold = split_view(open_dataset(root), train_ids, valid_ids, view="fold 2")
    with pytest.raises(DataError, match=rf"^fold 2: {re.escape(str(root))}: the labels of every emotion are constant"
                                        rf" over the {len(valid_ids)} clips of the validation split"):
        train(fold, tmp_path / "run", max_epochs=1, progress=False)
    ds = open_dataset(root)
    ids = {"train": [*train_ids, *valid_ids], "valid": list(valid_ids)}
    jobs = [FoldJob.at(ds, tmp_path / name, 0, ExperimentConfig(), fold=k, fold_ids=ids) for name, k in (("r", 0),
                                                                                                          ("f", 3))]
    assert [job.dataset(ds).where for job in jobs] == ["refit: ", "fold 3: "]


def test_a_vad_prior_on_a_modality_no_training_clip_has_is_refused(make_root, tmp_path) -> None:
    """It was refused as 'not a branch', which said nothing of why."""
    root = make_root(missing={"wav2vec2": [3 * i for i in range(1, 13)]})  # the train ids
    with pytest.raises(ConfigError, match=r"^model\.vad\.modality: modality 'wav2vec2' has no file for any of the 12"
                                          r" training clips, .*: set model\.vad\.modality to another branch, or add"):
        train(root, tmp_path / "named", config="paper", max_epochs=1, progress=False,
              overrides={"model.vad.modality": "wav2vec2"})


@contextlib.contextmanager
def held_elsewhere(folder: Path, *, command: str) -> Iterator[None]:
    """``folder`` held as another command holds it: by another thread, which shares none of this thread's holds."""
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with exclusive_output(folder, command=command):
            holding.set()
            done.wait(timeout=600)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(timeout=60)
    try:
        yield
    finally:
        done.set()
        holder.join()


def test_a_second_train_into_a_run_folder_being_written_is_refused(make_root, tmp_path) -> None:
    """Both used to write the folder and report success; it then held one run's files, perhaps mixed with the
    other's."""
    root, run = make_root(), tmp_path / "run"
    busy = rf"^{re.escape(str(run))}: another emimic train is writing this folder now; wait until it ends, or choose"
    # the first train holds the folder while it runs (in another thread: this one's own holds are refused otherwise)
    with held_elsewhere(run, command="train"), pytest.raises(OutputConflict, match=busy + r" another --out\.$"):
        train(root, run, config="paper", max_epochs=1, progress=False)
    assert not (tmp_path / ".run.lock").exists()
    assert train(root, run, config="paper", max_epochs=1, progress=False).epochs == 1  # the folder is free again


def test_a_run_that_ends_while_a_second_train_opens_its_data_is_not_trained_over(make_root, tmp_path,
                                                                                 monkeypatch) -> None:
    """The lock used to be taken after the folder was read: a run finishing meanwhile was silently replaced."""
    root, run = make_root(), tmp_path / "run"
    opened = emimic.training.run.open_dataset

    def open_while_another_train_runs(data, *args, **kwargs):
        monkeypatch.setattr(emimic.training.run, "open_dataset", opened)
        train(root, run, config="paper", seed=1, max_epochs=1, progress=False)
        return opened(data, *args, **kwargs)

    monkeypatch.setattr(emimic.training.run, "open_dataset", open_while_another_train_runs)
    with pytest.raises(OutputConflict, match=r"holds a finished run made with other settings or data \(seed was 1"):
        train(root, run, config="paper", seed=2, max_epochs=1, progress=False)
    assert "seed: 1\n" in (run / "config.yaml").read_text(encoding="utf-8")


def test_a_folder_that_cannot_be_locked_is_written_after_one_warning(tmp_path, monkeypatch) -> None:
    """No flock (Windows, Lustre without -o flock) or no right to write beside the folder: the command needs no lock."""
    folder = tmp_path / "runs" / "a"
    unlocked = rf"^cannot lock {re.escape(str(tmp_path))}/runs/\.a\.lock \(Function not implemented\): a concurrent"
    with monkeypatch.context() as patched:
        patched.setattr(fcntl, "flock", mock.Mock(side_effect=OSError(errno.ENOSYS, "Function not implemented")))
        warned = pytest.warns(UnlockedWarning, match=unlocked + rf" emimic train into {re.escape(str(folder))} would")
        with warned, exclusive_output(folder, command="train"):
            folder.mkdir()
    monkeypatch.setattr(emimic.outputs, "fcntl", None)
    warned = pytest.warns(UnlockedWarning, match=r"^this system has no flock, so emimic cannot lock the folders")
    with warned, exclusive_output(folder, command="train"):
        pass
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["a"]


def test_a_lock_folder_removed_by_another_commands_clean_up_is_made_again_and_locked(tmp_path, monkeypatch) -> None:
    """A FileNotFoundError from that race counted as 'no lock here': the job trained unlocked after a warning."""
    folder, real_open = tmp_path / "runs" / "a", open
    raced = []

    def open_after_a_racing_clean_up(path, *args, **kwargs):
        if not raced:  # another command's clean-up removes the parent folder just made
            raced.append(Path(path).parent.rmdir())
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(emimic.outputs, "open", open_after_a_racing_clean_up, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnlockedWarning)
        with exclusive_output(folder, command="train"):
            assert raced and (tmp_path / "runs" / ".a.lock").exists()


def test_a_lock_that_fails_for_another_reason_than_no_lock_here_is_an_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(fcntl, "flock", mock.Mock(side_effect=OSError(errno.EIO, "Input/output error")))
    with pytest.raises(OSError, match="Input/output error"), exclusive_output(tmp_path / "a", command="train"):
        pass


def test_a_refused_train_leaves_no_parent_folder_it_made_for_its_lock(make_root, tmp_path, capsys) -> None:
    root = make_root(valid=1)
    code, err = run_cli(["train", "--data", str(root), "--out", str(tmp_path / "runs" / "deep" / "a"), "--quiet"],
                        capsys)
    assert code == 1 and "the validation split has 1 clip(s)" in err
    assert not (tmp_path / "runs").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(OutputConflict), exclusive_output(tmp_path / "kept" / "new" / "a", command="train"):
        raise OutputConflict("refused")
    assert list((tmp_path / "kept").iterdir()) == []  # only what the lock made is removed


def test_a_one_pickle_modality_is_named_with_the_clip_and_never_as_a_clip_file(make_root) -> None:
    root = make_root()
    clips = {int(p.stem): pickle.loads(p.read_bytes()) for p in (root / "vit").glob("*.pkl")}
    clips[6] = clips[6] * 0 + 7e4
    shutil.rmtree(root / "vit")
    container = root / "vit.pkl"  # every clip in one pickle, as some teams keep them
    container.write_bytes(pickle.dumps(clips))
    with pytest.raises(DataError, match=rf"^{re.escape(str(container))} \[id 6\]: holds values up to 7e\+04"):
        pack(root, dtype="float16", progress=False)
    container.write_bytes(b"")
    with pytest.raises(DataError, match=rf"^{re.escape(str(container))}: is an empty file \(0 bytes\) where the"
                                        r" features of every clip of modality 'vit' belong; .* delete it to train"
                                        " without them"):
        pack(root, progress=False)


def test_a_diverged_training_reports_no_score(make_root, tmp_path, capsys) -> None:
    root = make_root()
    config = tmp_path / "hot.yaml"
    config.write_text("name: hot\noptim:\n  lr: 1.0e+8\n")  # the loss becomes NaN within three epochs
    run = tmp_path / "run"
    code, err = run_cli(["train", "--data", str(root), "--out", str(run), "--config", str(config),
                         "--max-epochs", "3", "--quiet"], capsys)
    assert_one_sentence(code, err, "diverged", "--overwrite and a lower learning rate")
    assert not (run / "metrics.json").exists()  # never reported as a finished run with a score


def test_a_checkpoint_with_nan_weights_is_refused_by_name(trained_run, simulated_root, tmp_path, capsys) -> None:
    run = shutil.copytree(trained_run.run, tmp_path / "run")
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    name = next(k for k, v in checkpoint["state_dict"].items() if k.startswith("net.") and v.is_floating_point())
    checkpoint["state_dict"][name].view(-1)[0] = float("nan")
    torch.save(checkpoint, run / "checkpoints" / "best.ckpt")
    code, err = run_cli(["predict", "--run", str(run), "--data", str(simulated_root), "--out",
                         str(tmp_path / "submission.csv")], capsys)
    assert_one_sentence(code, err, f"best.ckpt: holds NaN/Inf weights ({name.removeprefix('net.')!r}), so training"
                                   " diverged")


def test_predictions_that_overflow_name_both_causes(trained_run, simulated_root, tmp_path, capsys) -> None:
    root = shutil.copytree(simulated_root, tmp_path / "corpus", ignore=shutil.ignore_patterns(".emimic"))
    clip = read_split(root / "test_split.csv", require_labels=False).index[0]
    for path in root.glob(f"*/{clip:05d}.pkl"):  # every modality: finite values no training clip came near
        frames = np.asarray(pickle.loads(path.read_bytes()), dtype=np.float32)
        path.write_bytes(pickle.dumps(np.full_like(frames, 3e38)))
    code, err = run_cli(["predict", "--run", str(trained_run.run), "--data", str(root), "--out",
                         str(tmp_path / "submission.csv")], capsys)
    assert_one_sentence(code, err, f"(e.g. Filename {clip}): these clips hold extreme feature values, or the training"
                                   " diverged; check their features")


# -- feature scales --------------------------------------------------------------------------------------------


def _statistics(root: Path) -> ModalityStats:
    ds = open_dataset(root)
    return feature_statistics(ds.store(progress=False), ds.splits["train"].index, ["vit"])["vit"]


@pytest.mark.parametrize("scale", [1e-9, 1e9])
def test_standardisation_keeps_the_variation_of_features_at_any_scale(make_root, scale) -> None:
    roots = {factor: make_root(f"x{factor}") for factor in (1.0, scale)}
    for factor, root in roots.items():
        for path in (root / "vit").glob("*.pkl"):
            frames = pickle.loads(path.read_bytes())
            frames[:, 0] = 5.0  # a constant column: no variation to keep
            path.write_bytes(pickle.dumps((frames * factor).astype(np.float32)))
    plain, scaled = (_statistics(root) for root in roots.values())
    varying = np.arange(4 * 8) % 8 != 0  # pooled [mean, std, min, max] of every column but the constant one
    np.testing.assert_allclose(scaled.pooled_std[varying], plain.pooled_std[varying] * scale, rtol=1e-4)
    np.testing.assert_allclose(scaled.frame_std[1:], plain.frame_std[1:] * scale, rtol=1e-4)
    # the constant column is divided by the median scale of the others: a clip differing there stays on their scale
    np.testing.assert_allclose(scaled.pooled_std[~varying], np.median(scaled.pooled_std[varying]), rtol=1e-6)
    np.testing.assert_allclose(scaled.frame_std[0], np.median(scaled.frame_std[1:]), rtol=1e-6)


# -- run folders a user damaged ----------------------------------------------------------------------------------


def test_a_run_whose_best_checkpoint_was_deleted_says_how_to_get_it_back(trained_run, simulated_root, tmp_path,
                                                                          capsys) -> None:
    run = shutil.copytree(trained_run.run, tmp_path / "run")
    (run / "checkpoints" / "best.ckpt").unlink()
    sentence = f"{run}/checkpoints/best.ckpt: is missing, so the weights of this run are lost; train it again with"
    code, err = run_cli(["evaluate", "--run", str(run), "--data", str(simulated_root)], capsys)
    assert_one_sentence(code, err, sentence, f"--out {run} --overwrite")
    # the same training command used to show the stored score of a run nothing could use any more
    code, err = run_cli(["train", "--data", str(simulated_root), "--out", str(run), "--quiet"], capsys)
    assert_one_sentence(code, err, sentence)


def test_a_run_still_on_its_first_epoch_is_not_called_lost(trained_run, simulated_root, tmp_path, capsys) -> None:
    run = shutil.copytree(trained_run.run, tmp_path / "run")
    for name in ("checkpoints/best.ckpt", "metrics.json"):  # what a run holds before its first epoch ends
        (run / name).unlink()
    code, err = run_cli(["evaluate", "--run", str(run), "--data", str(simulated_root)], capsys)
    assert_one_sentence(code, err, f"{run}: has not saved an epoch yet", "resume it with the same `emimic train`")
    assert "lost" not in err


# -- transcripts ------------------------------------------------------------------------------------------------


def test_a_transcript_that_is_not_utf8_fails_its_clip_only(tmp_path) -> None:
    text = tmp_path / "corpus" / "text"
    text.mkdir(parents=True)
    (text / "00001.txt").write_bytes("café olé, so happy".encode("latin-1"))  # a Windows editor's encoding
    (text / "00002.txt").write_bytes("\ufeffwow I love it".encode())  # a byte-order mark, as Notepad writes
    (text / "00003.txt").write_text("that is great, amazing", encoding="utf-8")
    extract(tmp_path / "corpus", ["lexicon"], progress=False)
    errors = pd.read_csv(tmp_path / "corpus" / "_extract" / "errors.csv")
    assert errors["clip"].tolist() == [1]
    assert f"{text / '00001.txt'}: is not UTF-8 text (byte 0xe9 at offset 3); save it as UTF-8." in errors["error"][0]
    assert sorted(discover(tmp_path / "corpus").modalities["lexicon"].ids) == [2, 3]


# -- spreadsheet exports and feature folders ----------------------------------------------------------------------


def test_empty_rows_a_spreadsheet_leaves_at_the_end_are_ignored(make_root) -> None:
    root = make_root()
    path = root / "train_split.csv"
    clean = read_split(path)
    path.write_text(path.read_text() + ",,,,,,\n , ,,,,,\n")
    pd.testing.assert_frame_equal(read_split(path), clean)
    assert read_meta(path).index.equals(clean.index)
    assert validate(root, progress=False).ok


def test_train_on_clips_in_two_splits_says_run_validate_once(make_root, tmp_path, capsys) -> None:
    """The sentence said it, and the command added it again to the data error, as to any."""
    root = make_root()
    valid = root / "valid_split.csv"
    valid.write_text(valid.read_text() + (root / "train_split.csv").read_text().splitlines()[1] + "\n")
    code, err = run_cli(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--quiet"], capsys)
    assert_one_sentence(code, err, "are in both train_split.csv and valid_split.csv")
    assert err.endswith(f"a clip may be in one split only; run `emimic validate {root}` to list every problem.\n")


def test_a_semicolon_separated_split_is_named_as_such(make_root) -> None:
    root = make_root()
    path = root / "train_split.csv"
    path.write_text(path.read_text().replace(",", ";"))
    with pytest.raises(DataError, match=r"train_split\.csv: its columns are separated by ';'; save it comma-separated"):
        read_split(path)


def test_two_files_for_one_clip_are_refused_by_pack_and_train_as_by_validate(make_root, tmp_path, capsys) -> None:
    root = make_root()
    np.save(root / "vit" / "00003.npy", np.zeros((4, 8), dtype=np.float32))  # beside vit/00003.pkl
    assert not validate(root, progress=False).ok
    with pytest.raises(DataError, match=r"vit/00003\.\w+: duplicates clip 00003 \(00003\.\w+\); which one was meant"):
        pack(root, progress=False)
    code, err = run_cli(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--quiet"], capsys)
    assert_one_sentence(code, err, "duplicates clip 00003", "which one was meant is yours to say")


def test_an_empty_feature_file_says_so(make_root) -> None:
    root = make_root()
    (root / "vit" / "00003.pkl").write_bytes(b"")
    message = "vit/00003.pkl: is an empty file (0 bytes); extract it again, or delete it to mask the clip."
    assert message in {p.message for p in validate(root, progress=False).problems}
    with pytest.raises(DataError, match=re.escape(message)):
        pack(root, progress=False)


def test_predicting_without_a_modality_the_run_reads_says_which(trained_run, simulated_root, tmp_path,
                                                               capsys) -> None:
    root = shutil.copytree(simulated_root, tmp_path / "corpus", ignore=shutil.ignore_patterns(".emimic", "vit"))
    code, err = run_cli(["predict", "--run", str(trained_run.run), "--data", str(root), "--out",
                         str(tmp_path / "submission.csv")], capsys)
    assert_one_sentence(code, err, f"{root}: has no 'vit' features, which the model reads",
                        "add that folder, or use a run trained without it")


def test_a_modality_without_any_frame_is_refused_by_validate_as_by_pack(make_root) -> None:
    root = make_root(dims={"vit": 8, "face": 4})
    for path in (root / "face").glob("*.pkl"):
        path.write_bytes(pickle.dumps(np.zeros((0, 4), dtype=np.float32)))  # no face found in any clip
    sentence = "no clip of modality 'face' holds any frame; delete the folder"
    assert any(sentence in p.message and p.severity == "error" for p in validate(root, progress=False).problems)
    with pytest.raises(DataError, match=sentence):
        pack(root, progress=False)


def test_float64_values_beyond_float32_are_not_called_nan(make_root) -> None:
    root = make_root()
    (root / "vit" / "00003.pkl").write_bytes(pickle.dumps(np.full((3, 8), 1e300)))
    message = "vit/00003.pkl: holds values up to 1e+300, beyond the float32 range emimic computes in; rescale them."
    assert message in {p.message for p in validate(root, progress=False).problems}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


@pytest.mark.parametrize(("damaged", "command", "sentence"), [
    ("checkpoints/best.ckpt", "evaluate", "best.ckpt: cannot be read as a checkpoint (PytorchStreamReader failed"),
    ("checkpoints/last.ckpt", "train", "last.ckpt: cannot be read as a checkpoint (PytorchStreamReader failed"),
    ("metrics.json", "report", "metrics.json: cannot be read as the metrics of a run ("),
    ("metrics.json", "train", "metrics.json: cannot be read as the metrics of a run ("),
])
def test_a_damaged_run_file_is_named_with_the_way_out(damaged, command, sentence, trained_run, simulated_root,
                                                      tmp_path, capsys) -> None:
    run = shutil.copytree(trained_run.run, tmp_path / "run")
    _truncate(run / damaged)
    if damaged.endswith("last.ckpt"):
        (run / "metrics.json").unlink()  # an interrupted run: the same command resumes from last.ckpt
    argv = {"evaluate": ["evaluate", "--run", str(run), "--data", str(simulated_root)],
            "train": ["train", "--data", str(simulated_root), "--out", str(run), "--quiet"],
            "report": ["report", str(run), "--out", str(tmp_path / "report.html")]}[command]
    code, err = run_cli(argv, capsys)
    assert_one_sentence(code, err, sentence, "restore the file emimic wrote, or train the run again with --overwrite")


def test_a_metrics_file_emimic_did_not_write_is_named_once(tmp_path) -> None:
    (tmp_path / "listed").mkdir()
    (tmp_path / "listed" / "metrics.json").write_text("[0.5]")
    (tmp_path / "folder" / "metrics.json").mkdir(parents=True)
    for run, reason in (("listed", "it holds a JSON list, not an object"), ("folder", "Is a directory")):
        with pytest.raises(IncompatibleRun) as refused:
            read_metrics(tmp_path / run)
        path = str(tmp_path / run / "metrics.json")
        assert str(refused.value).startswith(f"{path}: cannot be read as the metrics of a run ({reason})")
        assert str(refused.value).count(path) == 1


def test_simulate_refuses_splits_too_small_for_a_pcc(tmp_path, capsys) -> None:
    code, err = run_cli(["simulate", "--out", str(tmp_path / "sim"), "--clips", "5", "--quiet"], capsys)
    assert_one_sentence(code, err, "clips=5 leaves 1 valid and 1 test clip(s)", "a PCC needs at least 2")
    assert not (tmp_path / "sim").exists()


def test_sweep_refuses_a_one_clip_valid_split_before_any_trial(make_root, tmp_path, capsys) -> None:
    root = make_root(valid=1)
    code, err = run_cli(["sweep", "--data", str(root), "--out", str(tmp_path / "sweep"), "--trials", "1",
                         "--max-epochs", "1", "--quiet"], capsys)
    assert_one_sentence(code, err, "the validation split has 1 clip(s)")  # not optuna's traceback of a trial
    assert not (tmp_path / "sweep").exists()


VALID_IDS = [3 * i for i in range(13, 19)]  # write_root's six valid clips (ids 39 to 54)
NO_PCC_TO_SELECT = ("so the model would predict one value for all of them and no PCC exists to select the best epoch"
                    " on; add their features, or validate on clips that have some.")


def test_a_valid_split_without_features_is_refused_as_nothing_can_be_selected_on_it(make_root, tmp_path: Path) -> None:
    """Its clips all got the one prediction of no input: every epoch scored a PCC of float32 noise (or 0), and the
    best epoch was a draw; validate called it 'ready to train'."""
    root = make_root(missing={"vit": VALID_IDS, "wav2vec2": VALID_IDS})
    report = validate(root, progress=False)
    assert report.ok  # a warning: validate has no config, and train.selection: last trains on it
    assert [p.message for p in report.problems if p.where == "valid_split"] == [
        "none of the 6 clips of the 'valid' split has a feature file, so the model would predict one value for all of"
        " them and no PCC exists to select the best epoch on; train refuses it under train.selection: best (the"
        " default), so add their features, or validate on clips that have some."]
    with pytest.raises(DataError) as caught:
        emimic.training.run.train(root, tmp_path / "run", max_epochs=1, progress=False)
    assert str(caught.value) == ("none of the 6 clips of the 'valid' split has any of the modalities the model reads"
                                 f" (vit, wav2vec2), {NO_PCC_TO_SELECT}")
    assert not (tmp_path / "run").exists()


def test_a_model_reading_only_modalities_no_valid_clip_has_is_refused(make_root, tmp_path: Path) -> None:
    root = make_root(missing={"vit": VALID_IDS})
    assert validate(root, progress=False).ok  # the valid clips have wav2vec2
    with pytest.raises(DataError, match=r"none of the 6 clips of the 'valid' split has any of the modalities the model"
                                        r" reads \(vit\), so"):
        emimic.training.run.train(root, tmp_path / "run", max_epochs=1, progress=False,
                                  overrides={"model.modalities": ["vit"]})
    last = emimic.training.run.train(root, tmp_path / "last", max_epochs=1, progress=False,  # selects nothing
                                     overrides={"model.modalities": ["vit"], "train.selection": "last"})
    assert last.valid.mean_pcc == 0.0  # one prediction for every clip: no PCC, scored 0


def test_the_observed_vad_modality_does_not_count_as_a_modality_the_model_reads(make_root, tmp_path: Path) -> None:
    """It feeds only the loss: valid clips with nothing but it got the one prediction of no input, and passed."""
    root = make_root(dims={"vit": 8, "wav2vec2": 12, "vad": 3}, missing={"vit": VALID_IDS, "wav2vec2": VALID_IDS})
    (root / "vad" / "_extractor.json").write_text(json.dumps({"feature_names": ["arousal", "dominance", "valence"]}))
    with pytest.raises(DataError) as caught:  # the prior of the wav2vec2 branch observes vad
        emimic.training.run.train(root, tmp_path / "run", max_epochs=1, progress=False,
                                  overrides={"model.modalities": ["vit", "wav2vec2"]})
    assert str(caught.value) == ("none of the 6 clips of the 'valid' split has any of the modalities the model reads"
                                 f" (vit, wav2vec2), {NO_PCC_TO_SELECT}")


def test_a_held_out_valid_share_without_features_says_to_hold_out_another(make_root, tmp_path: Path) -> None:
    from emimic.data.holdout import hold_out

    train_ids = [3 * i for i in range(1, 19)]  # write_root's train and valid clips, all in train_split.csv
    root = make_root(train=18, valid=0, missing={"vit": [3 * i for i in range(1, 19)]})
    held = hold_out(read_split(root / "train_split.csv"), 0.25)[1].index.tolist()
    for clip_id in set(train_ids) - set(held):  # only the held-out clips lack vit
        (root / "vit" / f"{clip_id:05d}.pkl").write_bytes(pickle.dumps(np.ones((3, 8), np.float32) * clip_id))
    (root / "valid_split.csv").unlink()
    with pytest.raises(DataError, match=rf"none of the {len(held)} clips of the 'valid' split has any of the modalities"
                                        r" the model reads \(vit\), .*; hold out another share of train with"
                                        r" --valid-fraction, or train a model reading a modality they have\.$"):
        emimic.training.run.train(root, tmp_path / "run", max_epochs=1, progress=False,
                                  overrides={"model.modalities": ["vit"], "train.valid_fraction": 0.25})


def _root_of_a_speaker_without_vit(make_root) -> Path:
    """A corpus of three speakers (a fold each, by speaker) whose clips of S2 have no vit features."""
    speaker = {clip_id: f"S{k % 3}" for k, clip_id in enumerate(3 * i for i in range(1, 19))}
    root = make_root(missing={"vit": [clip_id for clip_id, name in speaker.items() if name == "S2"]})
    for split in ("train", "valid"):
        table = pd.read_csv(root / f"{split}_split.csv")
        table.assign(speaker=table["Filename"].map(speaker)).to_csv(root / f"{split}_split.csv", index=False)
    return root


FOLD_WITHOUT_VIT = (r"^fold \d: none of the 6 clips of the 'valid' split has any of the modalities the model reads"
                    r" \(vit\), .*; draw the folds with another --fold-seed, use fewer --folds, or train a model"
                    r" reading a modality every fold has\.$")


def test_cv_with_a_fold_whose_valid_clips_lack_the_modalities_read_is_refused_before_any_fold_trains(
        make_root, tmp_path: Path) -> None:
    """Its refusal came when the fold's training started, after the other folds had trained."""
    root = _root_of_a_speaker_without_vit(make_root)
    with pytest.raises(DataError, match=FOLD_WITHOUT_VIT):
        cross_validate(root, tmp_path / "cv", folds=3, max_epochs=1, progress=False,
                       overrides={"model.modalities": ["vit"]}, report=lambda job, result: pytest.fail(job.run))
    assert not (tmp_path / "cv").exists()


def test_a_cv_folder_with_a_fold_an_earlier_emimic_trained_without_valid_features_gets_the_folds_way_out(
        make_root, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check of its started runs refused it first, with the way out of a plain valid split (a file to fix)."""
    root = _root_of_a_speaker_without_vit(make_root)
    with monkeypatch.context() as earlier:  # an emimic that checked no fold's valid features trained every fold
        for module in (emimic.training.run, emimic.training.crossval):
            earlier.setattr(module, "check_selectable", lambda *args, **kwargs: None)
        cross_validate(root, tmp_path / "cv", folds=3, max_epochs=1, progress=False,
                       overrides={"model.modalities": ["vit"]})
    with pytest.raises(DataError, match=FOLD_WITHOUT_VIT):
        cross_validate(root, tmp_path / "cv", folds=3, max_epochs=1, progress=False,
                       overrides={"model.modalities": ["vit"]}, report=lambda job, result: pytest.fail(job.run))


def test_check_selectable_refuses_a_call_that_passes_training_ids_where_it_took_them(make_root) -> None:
    """It took (cfg, store, train_ids, valid_ids) and now the training clips' missing modalities: an old call would
    have found no modality in a list of ids and checked every branch; ``untrainable`` is keyword-only instead."""
    root = make_root()
    store = FeatureStore.open(pack(root, dtype="float32", progress=False).store_dir)
    train_ids, valid_ids = (read_split(root / f"{split}_split.csv").index.to_numpy() for split in ("train", "valid"))
    with pytest.raises(TypeError, match="positional"):
        emimic.training.run.check_selectable(ExperimentConfig(), store, train_ids, valid_ids)


@pytest.mark.parametrize("selection", ["best", "searched"])
def test_sweep_refuses_a_valid_split_without_the_modalities_read_before_any_trial(make_root, tmp_path, capsys,
                                                                                   selection) -> None:
    """It was optuna's traceback of a failed trial; with train.selection searched, the study stopped at the first
    trial selecting its best epoch, after the others had trained."""
    root = make_root(missing={"vit": VALID_IDS})
    (tmp_path / "cfg.yaml").write_text("model:\n  modalities: [vit]\n"
                                       + ("train:\n  selection: last\n" if selection == "searched" else ""))
    searched = "train.selection: {type: categorical, choices: [last, best]}" if selection == "searched" else (
        "optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2}")
    (tmp_path / "space.yaml").write_text(f"params:\n  {searched}\n")
    code, err = run_cli(["sweep", "--data", str(root), "--out", str(tmp_path / "sweep"), "--config",
                         str(tmp_path / "cfg.yaml"), "--space", str(tmp_path / "space.yaml"), "--trials", "2",
                         "--max-epochs", "1", "--quiet"], capsys)
    assert_one_sentence(code, err, "none of the 6 clips of the 'valid' split has any of the modalities the model reads"
                                   " (vit)")
    assert not (tmp_path / "sweep").exists()
