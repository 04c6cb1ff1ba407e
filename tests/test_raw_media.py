"""The raw-media generator (benchmarks/raw_media.py) draws expressions FaceMesh can read, in the intended direction,
and a model trained on its videos from raw media only predicts unseen ones."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emimic.cli.registry import main
from emimic.features.vision import GEOMETRY_FEATURES, detect_landmarks, geometry
from emimic.labels import read_split, write_split
from emimic.training import train

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "raw_media.py"


@pytest.fixture(scope="module")
def raw_media():
    return load_script(SCRIPT)


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


# ---------------------------------------------------------------- learning from raw media (CI-sized)

BENCH = Path(__file__).parents[1] / "benchmarks" / "bench_raw_media.py"
# 48 clips (36 train, 12 valid) and 16 unseen: eGeMAPS hears the arousal in the prosody, FaceMesh sees the
# valence in the mouth corners. Video at 5 frames/s and FaceMesh at 2: the whole test takes ~30 s on 2 cores.
CLIPS, UNSEEN, VIDEO_FPS, FACE_FPS = 48, 16, 5, "2"
MODALITIES = "egemaps,face"
# Unseen mean PCC a model must exceed to count as having learned. A predictor unrelated to the labels scores
# 0 ± ~0.25 per dimension on 16 clips (1/sqrt(15)); the mean over six dimensions that share two factors is
# not much tighter, so the shuffled-label control below must stay under it and the trained model well above.
LEARNED_UNSEEN_PCC = 0.5


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def need_media_tools(raw_media) -> None:
    missing = raw_media.missing_tools()
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"{', '.join(missing)} not on PATH: CI must install them (see .ci/run)")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install -y espeak-ng ffmpeg); required when CI=true")


@pytest.fixture(scope="module")
def media_corpus(raw_media, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated raw videos with signal, extracted from the command line like a user would."""
    need_media_tools(raw_media)
    root = tmp_path_factory.mktemp("raw_media")
    raw_media.generate(root, CLIPS, UNSEEN, fps=VIDEO_FPS, verbose=False)
    assert main(["extract", "--data", str(root), "--modalities", MODALITIES, "--fps", FACE_FPS, "--quiet"]) == 0
    return root


def shuffled_copy(root: Path, out: Path) -> Path:
    """``root`` with its training labels permuted across clips: the same features, no signal to learn."""
    shutil.copytree(root, out, ignore=shutil.ignore_patterns(".emimic"))
    split = read_split(out / "train_split.csv", require_labels=True)
    permuted = np.random.default_rng(0).permutation(len(split))
    write_split(pd.DataFrame(split.to_numpy()[permuted], index=split.index, columns=split.columns),
                out / "train_split.csv")
    return out


def test_a_model_trained_on_raw_media_predicts_unseen_videos(media_corpus: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """extract → train (the default configuration) → ``emimic infer`` on unseen videos learns; the same pipeline
    on shuffled training labels does not, which is what makes the threshold meaningful."""
    monkeypatch.setenv("EMIMIC_CACHE", str(tmp_path / "cache"))
    bench = load_script(BENCH)
    learned = train(media_corpus, tmp_path / "learned", seed=0, progress=False).run
    control = train(shuffled_copy(media_corpus, tmp_path / "shuffled"), tmp_path / "control", seed=0,
                    progress=False).run
    assert bench.unseen_score(control, media_corpus) < LEARNED_UNSEEN_PCC
    assert bench.unseen_score(learned, media_corpus) > LEARNED_UNSEEN_PCC
