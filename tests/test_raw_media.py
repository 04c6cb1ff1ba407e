"""The raw-media generator (benchmarks/raw_media.py) draws expressions FaceMesh can read, in the intended direction."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from emimic.features.vision import GEOMETRY_FEATURES, detect_landmarks, geometry

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "raw_media.py"


@pytest.fixture(scope="module")
def raw_media():
    spec = importlib.util.spec_from_file_location("raw_media", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measured(raw_media, valence: float, arousal: float) -> dict[str, float]:
    face, points = raw_media.base_face()
    image = raw_media.expression(face, points, valence, arousal, amount=1.0)
    (found,) = detect_landmarks(image[None])
    return dict(zip(GEOMETRY_FEATURES, geometry(found, image.shape[1], image.shape[0]), strict=True))


def test_valence_lifts_the_mouth_corners_and_arousal_raises_the_brows(raw_media) -> None:
    sad, happy = measured(raw_media, 0.0, 0.5), measured(raw_media, 1.0, 0.5)
    calm, aroused = measured(raw_media, 0.5, 0.0), measured(raw_media, 0.5, 1.0)
    assert happy["lip_corner_lift"] > sad["lip_corner_lift"] + 0.1
    brows = ("brow_raise_r", "brow_raise_l")
    assert np.mean([aroused[b] for b in brows]) > np.mean([calm[b] for b in brows]) + 0.05


def test_labels_follow_the_hidden_factors(raw_media) -> None:
    rng = np.random.default_rng(0)
    valence, arousal = rng.uniform(size=400), rng.uniform(size=400)
    labels = raw_media.labels_of(valence, arousal, rng)
    joy, pain = labels[:, 5], labels[:, 3]
    assert np.corrcoef(joy, valence)[0, 1] > 0.8 and np.corrcoef(pain, valence)[0, 1] < -0.8
    assert labels.min() >= 0 and labels.max() <= 1
