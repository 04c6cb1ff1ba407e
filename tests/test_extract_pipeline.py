"""The extraction driver: files in the loader's layout, masking, failures, resumption, CLI, pool, Ray."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import flat
from emimic.cli.registry import main
from emimic.data.layout import discover
from emimic.errors import ConfigError
from emimic.features import EXTRACTORS, ClipInput, Extractor, Output, available_extractors, extract
from emimic.features.tiny import HIDDEN, save_tiny_models
from emimic.io import load_array
from emimic.labels import EMOTIONS, write_split

MEDIA = Path(__file__).parent / "media"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A dataset root with only raw videos: 1-2 face+speech, 3 no audio, 4 no face+silence, 5 corrupt."""
    (tmp_path / "raw").mkdir()
    for video in sorted(MEDIA.glob("*.mp4")):
        shutil.copy(video, tmp_path / "raw" / video.name)
    return tmp_path



def stems(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("[!_.]*"))


def test_every_modality_lands_in_the_loader_layout(root: Path, models: Path) -> None:
    summary = extract(
        root,
        available_extractors(),
        model_dir=models,
        options={"whisper": {"encoder": True}, "face": {"landmarks": True, "crops": True, "crop_size": 64}},
        progress=False,
    )
    assert summary.loc["egemaps", ["done", "skipped", "masked", "failed"]].tolist() == [3, 0, 1, 1]
    assert summary.loc["text_emb", ["done", "masked", "failed"]].tolist() == [2, 2, 1]  # 3: no audio, 4: silent
    assert summary.loc["face", ["done", "masked", "failed"]].tolist() == [3, 1, 1]

    # Audio modalities: no file for the clip without audio; faces: none for the clip without a face.
    for name in ("egemaps", "egemaps_func", "wav2vec2", "hubert", "wavlm", "vad", "vad_clip", "vad_emb", "whisper"):
        assert stems(root / name) == ["00001", "00002", "00004"], name
    for name in ("facemesh", "face_landmarks", "face_emb"):
        assert stems(root / name) == ["00001", "00002", "00003"], name
    assert stems(root / "text_emb") == ["00001", "00002"]
    assert stems(root / "face_images") == ["00001", "00002", "00003"]  # the dataset's pre-cropped layout
    crops = sorted((root / "face_images" / "00001").glob("*.jpg"), key=lambda p: int(p.stem))
    assert [p.stem for p in crops] == [str(n) for n in range(19)]
    assert cv2.imread(str(crops[0])).shape == (64, 64, 3)
    assert (root / "text" / "00004.txt").read_text() == ""  # silence: an empty transcript, not an error
    assert "happy" in (root / "text" / "00001.txt").read_text().lower()

    assert load_array(root / "egemaps" / "00001.npy").shape[1] == 25
    assert np.load(root / "egemaps_func" / "00001.npy").shape == (88,)
    assert np.load(root / "vad_clip" / "00002.npy").shape == (3,)
    assert np.load(root / "text_emb" / "00001.npy").shape == (384,)
    assert np.load(root / "wav2vec2" / "00001.npy").shape[1] == HIDDEN
    assert np.load(root / "facemesh" / "00003.npy").shape == (10, 17)

    sidecar = json.loads((root / "egemaps_func" / "_extractor.json").read_text())
    assert sidecar["extractor"] == "egemaps" and sidecar["level"] == "clip" and len(sidecar["feature_names"]) == 88
    assert json.loads((root / "facemesh" / "_extractor.json").read_text())["params"]["fps"] == 5.0
    errors = pd.read_csv(root / "_extract" / "errors.csv")
    assert set(errors["clip"]) == {5}
    assert errors["error"].str.contains("00005.mp4: is not a video or audio file FFmpeg can read").all()

    layout = discover(root)  # the loader sees every output folder as a modality, and no bookkeeping
    assert {"egemaps", "text_emb", "facemesh", "vad_clip", "whisper"} <= set(layout.modalities)
    assert not any(name.startswith("_") for name in layout.modalities)
    assert sorted(layout.transcripts) == [1, 2, 4]
    # the order of the VAD columns travels with them, for the model to read them by name
    assert layout.modalities["vad"].feature_names == ["arousal", "dominance", "valence"]


def test_resumes_and_retries_only_what_is_unfinished(root: Path) -> None:
    first = extract(root, "egemaps,face", progress=False)
    assert first["done"].tolist() == [3, 3]
    (root / "egemaps" / "00002.npy").unlink()  # as if the run had been killed before clip 2...
    with open(root / "_extract" / "ledger.csv", "a") as ledger:
        ledger.write("3,egemaps,mas")  # ...in the middle of a ledger line
    second = extract(root, "egemaps,face", progress=False)
    # Finished and masked clips are skipped; the deleted clip is redone and the corrupt one retried.
    assert second.loc["egemaps", ["done", "skipped", "masked", "failed"]].tolist() == [1, 3, 0, 1]
    assert second.loc["face", ["done", "skipped", "masked", "failed"]].tolist() == [0, 4, 0, 1]
    assert (root / "egemaps" / "00002.npy").is_file()
    rows = pd.read_csv(root / "_extract" / "ledger.csv")
    assert rows["params"].isna().sum() == 1 and len(rows) == 10 + 1 + 3  # the torn line stays alone


def test_changed_parameters_need_overwrite(root: Path) -> None:
    extract(root, "face", clips=[1], progress=False)
    with pytest.raises(ConfigError, match="--overwrite"):
        extract(root, "face", clips=[1], fps=2, progress=False)
    summary = extract(root, "face", clips=[1], fps=2, overwrite=True, progress=False)
    assert summary.loc["face", "done"] == 1 and np.load(root / "facemesh" / "00001.npy").shape[0] == 8


def test_local_processes_match_in_process(root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("serial")
    shutil.copytree(root / "raw", other / "raw")
    parallel = extract(root, "egemaps,face", workers=2, clips=[1, 3, 4, 5], progress=False)
    serial = extract(other, "egemaps,face", workers=1, clips=[1, 3, 4, 5], progress=False)
    pd.testing.assert_frame_equal(parallel, serial)
    for name in ("egemaps", "facemesh"):
        for path in (root / name).glob("0*.npy"):
            np.testing.assert_allclose(np.load(path), np.load(other / name / path.name), atol=1e-5)


def test_ray_tasks_on_a_local_two_cpu_ray(root: Path) -> None:
    pytest.importorskip("ray")
    summary = extract(root, "egemaps,face", workers=2, ray_address="local", progress=False)
    assert summary["done"].tolist() == [3, 3] and summary["failed"].tolist() == [1, 1]
    assert stems(root / "facemesh") == ["00001", "00002", "00003"]


def test_cli_runs_lists_and_reports_errors(root: Path, models: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["extract", "--data", str(root), "--modalities", "egemaps", "--quiet"]) == 0
    assert "egemaps" in capsys.readouterr().out and stems(root / "egemaps") == ["00001", "00002", "00004"]
    assert main(["extract", "--list"]) == 0 and "face_emb" in capsys.readouterr().out
    assert main(["extract", "--data", str(root), "--modalities", "wav2vecc"]) == 1
    assert "available: egemaps, face" in flat(capsys.readouterr().err)
    assert main(["extract", "--data", str(root), "--modalities", "vad", "--model-dir", str(root)]) == 1
    assert "needs a local model directory" in flat(capsys.readouterr().err)
    args = ["--option", "wav2vec2.layer=[0, 1]", "--model-dir", str(models), "--quiet"]
    assert main(["extract", "--data", str(root), "--modalities", "wav2vec2", *args]) == 0
    assert json.loads((root / "wav2vec2" / "_extractor.json").read_text())["params"]["layer"] == [0, 1]


class Faulty(Extractor):
    """Misbehaves differently per clip: raises, returns NaN, returns no frames."""

    name = "faulty"

    def outputs(self) -> tuple[Output, ...]:
        return (Output("faulty", "frame", "test output"),)

    def _process(self, clip: ClipInput) -> dict[str, pd.DataFrame]:
        if clip.clip_id == 1:
            raise RuntimeError("boom")
        values = np.full((2 if clip.clip_id == 2 else 0, 1), np.nan if clip.clip_id == 2 else 0.0)
        return {"faulty": pd.DataFrame(values, columns=["x"])}


def test_extractor_errors_are_per_clip_and_nothing_invalid_is_written(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(EXTRACTORS, "faulty", Faulty)
    summary = extract(root, "faulty", clips=[1, 2, 3], progress=False)
    assert summary.loc["faulty", ["done", "masked", "failed"]].tolist() == [0, 1, 2]
    errors = pd.read_csv(root / "_extract" / "errors.csv").set_index("clip")["error"]
    assert "RuntimeError: boom" in errors[1] and "2 NaN/Inf value(s)" in errors[2]
    assert not (root / "faulty").exists() or stems(root / "faulty") == []


def test_extracted_features_pack_and_train(tmp_path: Path, models: Path, capsys: pytest.CaptureFixture) -> None:
    """The issue's acceptance path: raw videos → extract → pack → train, with no glue in between."""
    root = tmp_path / "corpus"
    (root / "raw").mkdir(parents=True)
    ids = list(range(1, 13))
    for clip_id in ids:  # copies of the four valid clips: speech+face, no audio, no face+silence
        shutil.copy(MEDIA / f"{(clip_id - 1) % 4 + 1:05d}.mp4", root / "raw" / f"{clip_id:05d}.mp4")
    labels = pd.DataFrame(np.random.default_rng(0).uniform(size=(12, 6)), index=ids, columns=list(EMOTIONS))
    write_split(labels.iloc[:8], root / "train_split.csv")
    write_split(labels.iloc[8:], root / "valid_split.csv")
    modalities = ["--modalities", "egemaps,whisper,text_emb,vad,face", "--model-dir", str(models)]
    assert main(["extract", "--data", str(root), *modalities, "--quiet"]) == 0
    assert main(["pack", str(root), "--quiet"]) == 0
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--max-epochs", "1", "--quiet"]) == 0
    assert "Validation (4 clips)" in capsys.readouterr().out
