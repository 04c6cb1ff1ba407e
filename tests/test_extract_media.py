"""Decoding the committed test clips with PyAV (tests/media/make_media.sh says what each holds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emimic.errors import DataError
from emimic.features.media import SAMPLE_RATE, decode

MEDIA = Path(__file__).parent / "media"


def test_decodes_audio_and_frames_in_one_pass() -> None:
    media = decode(MEDIA / "00001.mp4", fps=5)
    assert media.audio is not None and media.audio.dtype == np.float32 and media.audio.ndim == 1
    assert media.sample_rate == SAMPLE_RATE
    assert 3.5 < len(media.audio) / SAMPLE_RATE < 3.9  # the espeak sentence lasts 3.68 s
    assert 0.01 < np.abs(media.audio).max() <= 1.0
    assert media.frames is not None and media.frames.dtype == np.uint8
    assert media.frames.shape[1:] == (160, 160, 3)
    np.testing.assert_allclose(np.diff(media.frame_times), 0.2, atol=1e-6)
    assert len(media.frames) == 19 and media.duration == pytest.approx(3.7, abs=0.05)


def test_frame_rate_and_size_are_configurable() -> None:
    media = decode(MEDIA / "00001.mp4", audio=False, fps=2, max_side=80)
    assert media.audio is None and media.audio_problem is None
    assert media.frames.shape[1:] == (80, 80, 3)
    np.testing.assert_allclose(np.diff(media.frame_times), 0.5, atol=1e-6)


def test_missing_audio_track_is_reported_not_raised() -> None:
    media = decode(MEDIA / "00003.mp4")
    assert media.audio is None and media.audio_problem == "no audio track"
    assert media.frames is not None and len(media.frames) == 10


def test_corrupt_file_is_a_data_error_naming_it() -> None:
    with pytest.raises(DataError, match=r"00005\.mp4"):
        decode(MEDIA / "00005.mp4")


def test_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="fps"):
        decode(MEDIA / "00001.mp4", fps=0)
