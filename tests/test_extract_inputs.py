"""Extractors run wherever their own inputs exist: transcripts without videos, audio files without videos."""

from __future__ import annotations

import json
import math
import shutil
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from emimic.cli.registry import main
from emimic.data.layout import discover
from emimic.data.simulate import SimulationSettings, simulate
from emimic.errors import DataError
from emimic.features import extract
from emimic.io import load_array


@pytest.fixture(scope="module")
def transcripts_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated corpus as teams receive it: transcripts in text/, no text_emb/, no raw/ videos."""
    root = tmp_path_factory.mktemp("sim") / "corpus"
    simulate(root, SimulationSettings(clips=30, seed=3, transcripts_only=True), progress=False)
    return root


def write_tone(path: Path, seconds: float = 1.0, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = [int(12000 * math.sin(2 * math.pi * 220 * t / rate)) for t in range(int(seconds * rate))]
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(struct.pack(f"<{len(samples)}h", *samples))


def test_the_simulator_can_write_transcripts_only(transcripts_only: Path) -> None:
    layout = discover(transcripts_only)
    assert not (transcripts_only / "text_emb").exists() and "text_emb" not in layout.modalities
    assert len(layout.transcripts) > 20 and not layout.videos


def test_text_extractors_run_on_transcripts_without_videos(transcripts_only: Path, tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    shutil.copytree(transcripts_only, root)
    transcripts = discover(root).transcripts
    spoken = {i for i, path in transcripts.items() if path.read_text().strip()}
    summary = extract(root, "text_emb,lexicon", progress=False)
    silent = len(transcripts) - len(spoken)
    for name in ("text_emb", "lexicon"):
        assert summary.loc[name, ["done", "masked", "failed"]].tolist() == [len(spoken), silent, 0]
    assert {int(p.stem) for p in (root / "text_emb").glob("*.npy")} == spoken
    assert load_array(next((root / "text_emb").glob("*.npy"))).shape == (1, 384)  # one clip-level row
    sidecar = json.loads((root / "lexicon_vad" / "_extractor.json").read_text())
    assert sidecar["feature_names"] == ["valence", "arousal", "dominance"]  # the axis order, recorded
    assert "text_emb" in discover(root).modalities  # the loader sees the new modality


def test_acoustic_extractors_read_audio_files_and_report_clips_without_input(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for clip_id in (4, 7):
        write_tone(root / "audio" / f"{clip_id:05d}.wav")
    (root / "text").mkdir()
    (root / "text" / "00009.txt").write_text("so happy")
    summary = extract(root, "egemaps", progress=False)
    assert summary.loc["egemaps", ["done", "failed", "no input"]].tolist() == [2, 0, 1]
    frames = load_array(root / "egemaps" / "00004.npy")
    assert frames.shape[1] == 25 and abs(len(frames) - 100) < 10  # 1 s at 100 Hz
    assert np.isfinite(frames).all()


def test_nothing_to_read_is_one_sentence(transcripts_only: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DataError, match=r"no clip has what egemaps reads \(expected raw/<id>\.mp4 or audio/"):
        extract(transcripts_only, "egemaps", progress=False)
    assert not (transcripts_only / "_extract").exists()  # refused before writing anything
    assert main(["extract", "--data", str(transcripts_only), "--modalities", "egemaps", "--quiet"]) == 1
    assert "no clip has what egemaps reads" in capsys.readouterr().err
