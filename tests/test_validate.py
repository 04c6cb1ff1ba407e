import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emimic.config import ModelConfig
from emimic.data.validate import validate
from emimic.errors import DataError
from emimic.labels import EMOTIONS, RatersWarning, read_meta
from emimic.models.emi import resolve_spec


def _dump(path: Path, value: object) -> None:
    with open(path, "wb") as handle:
        pickle.dump(value, handle)


def _messages(report) -> str:
    return "\n".join(f"{p.severity} {p.where} {p.message}" for p in report.problems)


def test_clean_root_is_ok_with_statistics(make_root) -> None:
    report = validate(make_root(missing={"vit": [3, 6]}), progress=False)
    assert report.ok, _messages(report)
    vit = report.modalities.set_index("modality").loc["vit"]
    assert vit["files"] == 20 and vit["width"] == 8 and vit["no train"] == 2
    assert report.splits.set_index("split").loc["test", "labelled"] is np.False_


def test_every_problem_is_listed(make_root) -> None:
    root = make_root()
    (root / "wav2vec2" / "00009.pkl").write_bytes(b"garbage")
    _dump(root / "vit" / "00012.pkl", np.array([[np.inf, 1.0]]))
    _dump(root / "vit" / "00015.pkl", np.ones((3, 5)))
    np.save(root / "vit" / "00018.npy", np.ones((3, 8)))
    _dump(root / "vit" / "99999.pkl", np.ones((3, 8)))
    _dump(root / "vit" / "notes.pkl", np.ones((3, 8)))
    report = validate(root, progress=False)
    messages = _messages(report)
    assert not report.ok
    for expected in [
        " wav2vec2/00009.pkl: cannot be read",
        " vit/00012.pkl: holds 1 NaN/Inf",
        " vit/00015.pkl: feature width 5",
        " vit/00018.pkl: duplicates clip 00018 (vit/00018.npy); which one was meant is yours to say",
        "1 file(s) for ids in no split: 99999.",
        " vit/notes.pkl: file name is not a clip id",
    ]:
        assert expected in messages, messages


def test_duplicate_ids_in_a_split(make_root) -> None:
    root = make_root()
    text = (root / "valid_split.csv").read_text().splitlines()
    (root / "valid_split.csv").write_text("\n".join([*text, text[1]]) + "\n")
    rows = f"rows 2, {len(text) + 1}"  # the first clip's row, and the same line again at the end
    assert f"valid_split.csv: column 'Filename' lists clip id 39 in {rows}; keep one row per clip." in _messages(
        validate(root, progress=False))


def test_labels_out_of_range_and_cross_split_duplicates(make_root) -> None:
    root = make_root()
    train = (root / "train_split.csv").read_text().splitlines()
    (root / "train_split.csv").write_text("\n".join([train[0], train[1].rsplit(",", 1)[0] + ",1.7", *train[2:]]))
    valid = (root / "valid_split.csv").read_text().splitlines()
    (root / "valid_split.csv").write_text("\n".join([*valid, "3," + ",".join(["0.5"] * 6)]) + "\n")
    messages = _messages(validate(root, progress=False))
    assert "'Joy' for Filename 3 is 1.7" in messages
    assert "Filename 3 is in both" not in messages  # the broken train split could not be read
    (root / "train_split.csv").write_text("\n".join(train) + "\n")
    assert "Filename 3 is in both train and valid" in _messages(validate(root, progress=False))


def test_root_without_features_or_train_split_is_not_trainable(tmp_path: Path) -> None:
    report = validate(tmp_path, progress=False)
    assert not report.ok
    assert "nothing to train on" in _messages(report) and "no folder of per-clip" in _messages(report)


def test_zero_frame_files_are_a_warning(make_root) -> None:
    root = make_root()
    np.save(root / "vit" / "00006.npy", np.zeros((0, 8), np.float32))
    (root / "vit" / "00006.pkl").unlink()
    report = validate(root, progress=False)
    assert report.ok
    assert "1 file(s) hold zero frames and are masked" in _messages(report)


def _errors(root: Path) -> list[str]:
    return [p.message for p in validate(root, progress=False).errors]


@pytest.mark.parametrize("cell", ["0", "-3", "2.5", "", "abc"])
def test_a_bad_rater_count_is_refused_by_validate_in_trains_words(make_root, cell: str) -> None:
    """train reads the raters column whatever its config (paper's sample weights are off): validate said "ready to
    train" of what train then refused."""
    root = make_root()
    path = root / "valid_split.csv"
    frame = pd.read_csv(path)
    frame["raters"] = ["10"] * (len(frame) - 1) + [cell]
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as refused:
        read_meta(path)  # what train's VidmimicDataset.meta() reads
    assert _errors(root) == [str(refused.value)]
    assert f"{path}: column 'raters' row {len(frame) + 1} holds" in str(refused.value)


@pytest.mark.parametrize("counts", [[1] * 90 + [150] * 5, [*range(1, 6)] * 18 + [600], [1, 1, 200], [10] * 9 + [1001]])
def test_a_rater_count_far_above_the_median_is_a_warning_not_a_refusal(tmp_path: Path, counts: list[int]) -> None:
    """A corpus may rate most clips once and a few by a panel of 150, whatever the config: these were refused as
    typos. The first count over 100 times the median is named, as a typo (1001 among 10s) would weigh much."""
    path = tmp_path / "valid_split.csv"
    frame = pd.DataFrame({"Filename": range(1, len(counts) + 1), **{e: 0.5 for e in EMOTIONS}, "raters": counts})
    frame.to_csv(path, index=False)
    with pytest.warns(RatersWarning) as caught:
        assert read_meta(path)["raters"].tolist() == counts
    row, median = next(i for i, n in enumerate(counts) if n > 100 * np.median(counts)), np.median(counts)
    assert [str(w.message) for w in caught] == [
        f"{path}: column 'raters' row {row + 2} holds {counts[row]}, more than 100 times the file's median count"
        f" ({median:g}), so with loss.sample_weights: sqrt_raters the clip would weigh as"
        f" {(counts[row] / median) ** 0.5:.0f} typical clips; correct it if it is a typo."]


def test_validate_lists_a_rater_count_far_above_the_median_as_a_warning(make_root) -> None:
    root = make_root()
    path = root / "valid_split.csv"
    frame = pd.read_csv(path)
    frame["raters"] = [10] * (len(frame) - 1) + [100000]
    frame.to_csv(path, index=False)
    report = validate(root, progress=False)
    assert report.ok
    assert [p.message for p in report.problems if "raters" in p.message] == [
        f"{path}: column 'raters' row {len(frame) + 1} holds 100000, more than 100 times the file's median count (10),"
        " so with loss.sample_weights: sqrt_raters the clip would weigh as 100 typical clips; correct it if it is a"
        " typo."]


def test_feature_names_train_refuses_are_named_by_validate_in_its_words(make_root) -> None:
    """A 3-column vad/ is the observed VAD prior of every preset but no_vad: without names telling its axes apart
    train refused it while validate said "ready to train"; validate, which reads no config, warns of it (an error
    made every no_vad user's validate fail, with advice about a config it does not read). Names of another count than
    the width pack refuses whatever the config."""
    root = make_root(dims={"wav2vec2": 6, "vad": 3})
    with pytest.raises(DataError) as refused:
        resolve_spec(ModelConfig(), {"wav2vec2": 6, "vad": 3}, {"wav2vec2": None, "vad": None})
    report = validate(root, progress=False)
    assert report.ok
    assert [p.message for p in report.problems if p.where == "vad"] == [
        "under the default config (model.vad.observed: vad, as every preset but no_vad sets it) train refuses this:"
        f" {refused.value}"]
    record = root / "vad" / "_extractor.json"
    record.write_text(json.dumps({"feature_names": ["arousal", "valence"]}))
    assert _errors(root) == [f"{record}: names 2 feature columns but the files of modality 'vad' are 3 wide; fix its"
                             " feature_names or delete it."]
    record.write_text(json.dumps({"feature_names": ["arousal", "dominance", "valence"]}))
    assert not [p for p in validate(root, progress=False).problems if p.where == "vad"]
    record.unlink()
    (root / "wav2vec2").rename(root / "face")  # no acoustic branch, so no VAD prior: train reads vad/ as a branch
    assert not [p for p in validate(root, progress=False).problems if p.where == "vad"]
