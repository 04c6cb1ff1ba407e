"""The simulated corpus: layout, determinism, label ranges, missing modalities and the oracle report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emimic.cli.registry import main
from emimic.data.simulate import (
    SimulationSettings,
    expected_clipped,
    simulate,
)
from emimic.errors import ConfigError, DataError
from emimic.io import load_array
from emimic.labels import EMOTIONS, clip_stem, read_split

# Tiny widths and short clips keep every corpus here well under a second to write.
TINY = {"clips": 40, "face_dim": 6, "audio_dim": 10, "text_dim": 5, "audio_fps": 20.0}


def tiny(**overrides: object) -> SimulationSettings:
    return SimulationSettings(**(TINY | overrides))


def corpus_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("sim")
    return root, simulate(root, tiny(), progress=False)


def test_layout_and_split_csvs(corpus: tuple[Path, dict]) -> None:
    root, _ = corpus
    header = "Filename," + ",".join(EMOTIONS)
    for split in ("train", "valid"):
        assert (root / f"{split}_split.csv").read_text().splitlines()[0] == header
    assert (root / "test_split.csv").read_text().splitlines()[0] == "Filename"
    train, valid = read_split(root / "train_split.csv"), read_split(root / "valid_split.csv")
    test = read_split(root / "test_split.csv", require_labels=False)
    assert (len(train), len(valid), len(test)) == (24, 8, 8)
    ids = [*train.index, *valid.index, *test.index]
    assert len(set(ids)) == 40
    for folder in ("vit", "wav2vec2", "text", "text_emb"):
        assert all(p.stem == clip_stem(int(p.stem)) and int(p.stem) in ids for p in (root / folder).iterdir())


def test_arrays_have_declared_widths_and_varying_lengths(corpus: tuple[Path, dict]) -> None:
    root, _ = corpus
    face = [load_array(p) for p in sorted((root / "vit").glob("*.pkl"))]
    audio = [load_array(p) for p in sorted((root / "wav2vec2").glob("*.pkl"))]
    assert {a.shape[1] for a in face} == {6} and {a.shape[1] for a in audio} == {10}
    assert len({a.shape[0] for a in audio}) > 1
    # The text embedding is one clip-level vector: 1-D on disk.
    vector = pd.read_pickle(next((root / "text_emb").glob("*.pkl")))
    assert vector.shape == (5,) and vector.dtype == np.float32
    # Features carry per-feature scales and offsets, not unit-scaled values.
    stacked = np.concatenate(audio)
    assert stacked.std(axis=0).max() / stacked.std(axis=0).min() > 2


def test_labels_in_range_and_truth_kept_apart(corpus: tuple[Path, dict]) -> None:
    root, _ = corpus
    for split in ("train", "valid"):
        labels = read_split(root / f"{split}_split.csv").to_numpy()
        assert labels.min() >= 0 and labels.max() <= 1 and labels.std() > 0.05
    truth = read_split(root / ".truth" / "test_labels.csv")
    test = read_split(root / "test_split.csv", require_labels=False)
    assert list(truth.index) == list(test.index) and test.isna().all().all()
    clips = pd.read_csv(root / ".truth" / "clips.csv", index_col="Filename")
    assert len(clips) == 40 and set(clips["split"]) == {"train", "valid", "test"}


def test_empty_transcripts_have_no_embedding(corpus: tuple[Path, dict]) -> None:
    root, _ = corpus
    transcripts = {int(p.stem): p.read_text() for p in (root / "text").glob("*.txt")}
    embedded = {int(p.stem) for p in (root / "text_emb").glob("*.pkl")}
    assert any(text == "" for text in transcripts.values())
    assert any(text.strip() for text in transcripts.values())
    assert embedded == {i for i, text in transcripts.items() if text}


def test_oracle_report(corpus: tuple[Path, dict]) -> None:
    root, report = corpus
    assert json.loads((root / "oracle.json").read_text()) == report
    for split, mean in report["oracle_mean_pcc"].items():
        per_emotion = report["oracle_pcc"][split]
        assert list(per_emotion) == list(EMOTIONS)
        assert 0 < mean <= 1 and mean == pytest.approx(np.mean(list(per_emotion.values())))
    assert report["settings"] == tiny().model_dump()
    assert report["clips"] == {"train": 24, "valid": 8, "test": 8}


def test_oracle_is_the_pcc_of_expected_and_observed_labels_as_written(corpus: tuple[Path, dict]) -> None:
    """Recomputed from the files alone: expected labels (.truth/clips.csv) vs the split CSVs' labels."""
    root, report = corpus
    truth = pd.read_csv(root / ".truth" / "clips.csv", index_col="Filename")
    observed = {"train": read_split(root / "train_split.csv"), "valid": read_split(root / "valid_split.csv"),
                "test": read_split(root / ".truth" / "test_labels.csv")}
    for split, labels in observed.items():
        expected = truth.loc[labels.index]
        for emotion in EMOTIONS:
            pcc = np.corrcoef(expected[f"expected {emotion}"], labels[emotion])[0, 1]
            assert report["oracle_pcc"][split][emotion] == pytest.approx(pcc, abs=1e-5), (split, emotion)


def test_speakers_never_cross_splits(corpus: tuple[Path, dict]) -> None:
    root, report = corpus
    clips = pd.read_csv(root / ".truth" / "clips.csv", index_col="Filename")
    splits_per_speaker = clips.groupby("speaker")["split"].nunique()
    assert (splits_per_speaker == 1).all(), splits_per_speaker[splits_per_speaker > 1]
    assert clips["speaker"].nunique() == report["speakers"] and clips.groupby("speaker").size().max() > 1


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    settings = tiny(clips=12)
    simulate(tmp_path / "a", settings, progress=False)
    simulate(tmp_path / "b", settings, progress=False)
    simulate(tmp_path / "c", tiny(clips=12, seed=1), progress=False)
    a, b, c = (corpus_bytes(tmp_path / n) for n in "abc")
    assert a == b
    assert a["train_split.csv"] != c["train_split.csv"]


def test_missing_rates_are_honoured(tmp_path: Path) -> None:
    settings = tiny(clips=400, missing_face=0.3, missing_audio=0.0, missing_text=0.5, audio_fps=5.0)
    report = simulate(tmp_path, settings, progress=False)
    assert len(list((tmp_path / "wav2vec2").glob("*.pkl"))) == 400
    assert len(list((tmp_path / "vit").glob("*.pkl"))) == pytest.approx(280, abs=40)
    assert len(list((tmp_path / "text").glob("*.txt"))) == pytest.approx(200, abs=40)
    assert report["coverage"]["vit"] == pytest.approx(0.7, abs=0.1)


def test_more_rater_noise_lowers_the_oracle(tmp_path: Path) -> None:
    quiet = simulate(tmp_path / "q", tiny(clips=300, rater_noise=0.05, audio_fps=5.0), progress=False)
    noisy = simulate(tmp_path / "n", tiny(clips=300, rater_noise=0.6, audio_fps=5.0), progress=False)
    assert quiet["oracle_mean_pcc"]["train"] > 0.95 > noisy["oracle_mean_pcc"]["train"]


def test_expected_clipped_matches_monte_carlo() -> None:
    mean = np.array([-0.2, 0.1, 0.5, 0.95, 1.3])
    draws = np.clip(mean + 0.3 * np.random.default_rng(0).standard_normal((200_000, 5)), 0, 1).mean(axis=0)
    np.testing.assert_allclose(expected_clipped(mean, 0.3), draws, atol=3e-3)
    np.testing.assert_array_equal(expected_clipped(mean, 0.0), np.clip(mean, 0, 1))


def test_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="extra"):
        SimulationSettings(clip=10)
    with pytest.raises(ValueError, match="test split"):
        SimulationSettings(train_fraction=0.8, valid_fraction=0.2)
    config = tmp_path / "sim.yaml"
    config.write_text("clips: 50\nface_dim: 4\n")
    assert SimulationSettings.from_yaml(config, face_dim=8).model_dump()["face_dim"] == 8
    config.write_text("clips: [1\n")
    with pytest.raises(ConfigError, match=r"sim\.yaml"):
        SimulationSettings.from_yaml(config)


def test_cli_simulate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text("clips: 30\nface_dim: 4\naudio_dim: 6\ntext_dim: 3\n")
    out = tmp_path / "corpus"
    assert main(["simulate", "--out", str(out), "--config", str(config), "--seed", "2", "--quiet"]) == 0
    assert "valid" in capsys.readouterr().out
    report = json.loads((out / "oracle.json").read_text())
    assert report["settings"]["seed"] == 2 and report["settings"]["face_dim"] == 4
    assert main(["simulate", "--out", str(out), "--clips", "2", "--quiet"]) == 1


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_out_folder_holding_anything_else_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="is not empty and holds no simulated corpus; choose a new or empty --out"):
        simulate(tmp_path, tiny(clips=12), progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    out = tmp_path / "corpus"
    simulate(out, tiny(clips=12), progress=False)
    before = mtimes(out)
    assert main(["simulate", "--out", str(out), "--clips", "12", "--seed", "1", "--face-dim", "6", "--quiet"]) == 1
    assert "holds a simulation with other settings (audio_dim 10 there, 768 here, audio_fps 20.0 there, 50.0 here," \
        " seed 0 there, 1 here and 1 more)" in " ".join(capsys.readouterr().err.split())
    assert mtimes(out) == before  # nothing mixed in


def test_overwrite_writes_a_simulation_of_other_settings_anew_and_never_touches_other_folders(tmp_path: Path) -> None:
    """What `emimic demo --overwrite` relies on when --seed or --clips changed."""
    simulate(tmp_path / "corpus", tiny(clips=20), progress=False)
    simulate(tmp_path / "corpus", tiny(clips=12, seed=1), progress=False, overwrite=True)
    simulate(tmp_path / "fresh", tiny(clips=12, seed=1), progress=False)
    assert corpus_bytes(tmp_path / "corpus") == corpus_bytes(tmp_path / "fresh")  # no clip of the old corpus left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="holds no simulated corpus"):
        simulate(tmp_path / "mine", tiny(clips=12), progress=False, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_overwrite_deletes_only_what_the_simulator_and_packing_wrote(tmp_path: Path) -> None:
    """A user's file (or a modality extracted later) keeps the old corpus whole; the store and a temporary file
    left by a killed simulation are the simulator's, and go."""
    corpus = tmp_path / "corpus"
    simulate(corpus, tiny(clips=20), progress=False)
    (corpus / "marker").write_text("mine")
    before = mtimes(corpus)
    with pytest.raises(DataError, match=rf"^{corpus / 'marker'}: was not written by the simulator, so the simulation"
                                        rf" in {corpus} is not replaced; move it out"):
        simulate(corpus, tiny(clips=12, seed=1), progress=False, overwrite=True)
    assert mtimes(corpus) == before
    (corpus / "marker").unlink()
    (corpus / ".emimic" / "store").mkdir(parents=True)
    (corpus / ".emimic" / "store" / "manifest.json").write_text("{}")
    (corpus / ".oracle.json.x1y2.tmp").write_text("")
    simulate(corpus, tiny(clips=12, seed=1), progress=False, overwrite=True)
    simulate(tmp_path / "fresh", tiny(clips=12, seed=1), progress=False)
    assert corpus_bytes(corpus) == corpus_bytes(tmp_path / "fresh")


def test_overwrite_replaces_a_linked_corpus_inside_its_target(tmp_path: Path) -> None:
    target, link = tmp_path / "target", tmp_path / "link"
    simulate(target, tiny(clips=20), progress=False)
    link.symlink_to(target, target_is_directory=True)
    simulate(link, tiny(clips=12, seed=1), progress=False, overwrite=True)
    simulate(tmp_path / "fresh", tiny(clips=12, seed=1), progress=False)
    assert link.is_symlink() and corpus_bytes(target) == corpus_bytes(tmp_path / "fresh")


def test_an_interrupted_overwrite_is_still_a_simulation_that_overwrite_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "corpus"
    simulate(corpus, tiny(clips=20), progress=False)
    deleted: list[str] = []

    def killed_after_two(self: Path, missing_ok: bool = False) -> None:
        if len(deleted) == 2:
            raise KeyboardInterrupt
        deleted.append(self.name)
        real_unlink(self, missing_ok=missing_ok)

    real_unlink = Path.unlink
    monkeypatch.setattr(Path, "unlink", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        simulate(corpus, tiny(clips=12, seed=1), progress=False, overwrite=True)
    monkeypatch.undo()
    assert len(deleted) == 2  # stopped half-way, the settings file not yet deleted
    simulate(corpus, tiny(clips=12, seed=1), progress=False, overwrite=True)
    simulate(tmp_path / "fresh", tiny(clips=12, seed=1), progress=False)
    assert corpus_bytes(corpus) == corpus_bytes(tmp_path / "fresh")


def test_same_settings_again_is_a_no_op_and_an_interrupted_run_is_completed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tiny(clips=12)
    first = simulate(tmp_path, settings, progress=False)
    before = mtimes(tmp_path)
    assert simulate(tmp_path, settings, progress=False) == first
    assert mtimes(tmp_path) == before
    flags = (f"--{k.replace('_', '-')}={v}" for k, v in (TINY | {"clips": 12}).items())
    assert main(["simulate", "--out", str(tmp_path), "--quiet", *flags]) == 0
    assert "already holds this simulation (same settings); no file was rewritten" in capsys.readouterr().out
    assert mtimes(tmp_path) == before

    complete = corpus_bytes(tmp_path)
    (tmp_path / "oracle.json").unlink()  # as if killed before the end
    (tmp_path / "vit" / "00001.pkl").unlink(missing_ok=True)
    (tmp_path / "vit" / "00002.pkl").write_bytes(b"")
    assert simulate(tmp_path, settings, progress=False) == first
    assert corpus_bytes(tmp_path) == complete
