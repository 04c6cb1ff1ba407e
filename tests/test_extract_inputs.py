"""Extractors run wherever their own inputs exist: transcripts without videos, audio files without videos."""

from __future__ import annotations

import json
import math
import os
import struct
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import documented_commands, flat
from emimic.cli.registry import main
from emimic.data.layout import discover
from emimic.errors import DataError
from emimic.features import extract
from emimic.io import load_array

EXAMPLE = "test_extract_inputs.py::test_docs_text_without_videos_example"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documented example, run once: a transcripts-only corpus, its text modalities extracted, a run."""
    folder = tmp_path_factory.mktemp("example")
    previous = Path.cwd()
    os.chdir(folder)
    try:
        codes = [(argv, main(argv[1:]), expected) for argv, expected in documented_commands("extract.md", EXAMPLE)]
    finally:
        os.chdir(previous)
    assert all(code == expected for _, code, expected in codes), codes
    return folder


def write_tone(path: Path, seconds: float = 1.0, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = [int(12000 * math.sin(2 * math.pi * 220 * t / rate)) for t in range(int(seconds * rate))]
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(struct.pack(f"<{len(samples)}h", *samples))


def test_docs_text_without_videos_example(example: Path) -> None:
    coverage = json.loads((example / "runs" / "text" / "metrics.json").read_text())["coverage"]
    assert {"text_emb", "lexicon", "lexicon_vad"} <= set(coverage)  # trained with the extracted modalities


def test_text_extractors_run_on_transcripts_without_videos(example: Path) -> None:
    root = example / "corpus"
    layout = discover(root)
    assert not layout.videos and not list((root / "text_emb").glob("*.pkl"))  # the simulator wrote transcripts only
    spoken = {i for i, path in layout.transcripts.items() if path.read_text().strip()}
    ledger = pd.read_csv(root / "_extract" / "ledger.csv")
    for name in ("text_emb", "lexicon"):
        statuses = ledger[ledger["extractor"] == name].set_index("clip")["status"]
        assert set(statuses[statuses == "done"].index) == spoken
        assert set(statuses[statuses == "masked"].index) == set(layout.transcripts) - spoken  # empty transcripts
    assert set(layout.modalities["text_emb"].ids) == spoken
    assert load_array(next((root / "text_emb").glob("*.npy"))).shape == (1, 384)  # one clip-level row
    sidecar = json.loads((root / "lexicon_vad" / "_extractor.json").read_text())
    assert sidecar["feature_names"] == ["valence", "arousal", "dominance"]  # the axis order, recorded


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


def test_nothing_to_read_is_one_sentence(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = example / "corpus"
    with pytest.raises(DataError, match=r"no clip has what egemaps reads \(expected raw/<id>\.mp4 or audio/"):
        extract(root, "egemaps", progress=False)
    assert not (root / "egemaps").exists()  # refused before writing anything
    assert main(["extract", "--data", str(root), "--modalities", "egemaps", "--quiet"]) == 1
    assert "no clip has what egemaps reads" in capsys.readouterr().err


def test_a_feature_folder_emimic_did_not_extract_is_never_mixed_into(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from emimic.data.simulate import SimulationSettings, simulate

    root = tmp_path / "corpus"  # transcripts and the simulator's own text_emb vectors, as a challenge corpus ships
    simulate(root, SimulationSettings(clips=30, seed=0, face_dim=8, audio_dim=8, text_dim=8), progress=False)
    given = sorted(p.name for p in (root / "text_emb").iterdir())
    refusal = (f"error: {root / 'text_emb'}/ holds {len(given)} entries that emimic did not extract (it has no"
               " _extractor.json); text_emb would mix its own with them; move or rename that folder first (a renamed"
               " feature folder is read as a modality of its own), or extract into another dataset root.")
    for extra in ([], ["--overwrite"]):
        assert main(["extract", "--data", str(root), "--modalities", "text_emb", "--quiet", *extra]) == 1
        assert flat(capsys.readouterr().err) == refusal
    assert sorted(p.name for p in (root / "text_emb").iterdir()) == given and not (root / "_extract").exists()

    assert main(["extract", "--data", str(root), "--modalities", "whisper", "--quiet"]) == 1  # provided transcripts
    assert flat(capsys.readouterr().err).startswith(f"error: {root / 'text'}/ holds")

    (root / "text_emb").rename(root / "text_emb_given")
    summary = extract(root, "text_emb", progress=False)
    assert summary.loc["text_emb", "skipped"] == 0 and summary.loc["text_emb", "done"] > 0
    assert {"text_emb", "text_emb_given"} <= set(discover(root).modalities)
