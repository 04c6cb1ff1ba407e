"""A small corpus of real media with signal: espeak-ng speech over a warped face, in the Vidmimic layout.

Each clip has two hidden factors, valence ``v`` and arousal ``a`` (uniform in [0, 1]); the six
labels are fixed mixtures of them plus rater noise. Three modalities carry them, each differently:

- wording (text): sentences from a positive, neutral or negative pool chosen by ``v``;
- prosody (audio): espeak-ng pitch, speed and amplitude rise with ``a``;
- face (video): the scikit-image astronaut, warped so the mouth corners rise with ``v`` (fall
  below 0.5), the lower lip drops and the brows rise with ``a``; the expression builds up
  over the first half of the clip.

Needs ``espeak-ng`` and ``ffmpeg`` on the PATH (``apt-get install -y espeak-ng ffmpeg``) and
mediapipe (to place the warp on the face's landmarks). Writes ``OUT/raw/<id>.mp4``,
``train_split.csv``, ``valid_split.csv`` and, for clips held out from both (``--unseen``),
``OUT/unseen/<id>.mp4`` with their labels in ``OUT/unseen_labels.csv``.

    python benchmarks/raw_media.py --out data/raw_media --clips 120 --unseen 16
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage import data, transform, util

from emimic.features.vision import detect_landmarks
from emimic.labels import EMOTIONS, clip_stem, write_split

FPS = 10
SIZE = 160
POSITIVE = (
    "This is wonderful, I love it so much.",
    "What a great day, everything went perfectly.",
    "I am so happy and proud of you.",
    "That was brilliant, thank you, it made me laugh.",
)
NEUTRAL = (
    "The meeting is at ten in the morning.",
    "Please put the box on the table.",
    "The train leaves from platform four.",
    "I read the report this afternoon.",
)
NEGATIVE = (
    "That is terrible, I am so sorry for your loss.",
    "It hurts so much, I cannot bear it.",
    "This is awful and it makes me sad.",
    "I feel miserable and alone tonight.",
)
# Label mixtures of (valence, arousal, 1 - valence, 1 - arousal): each emotion its own blend.
MIXTURES = np.array([
    [0.6, 0.0, 0.0, 0.4],  # Admiration: pleasant, calm
    [0.6, 0.4, 0.0, 0.0],  # Amusement
    [0.0, 0.6, 0.4, 0.0],  # Determination: intense, not cheerful
    [0.0, 0.0, 0.8, 0.2],  # Empathic Pain
    [0.2, 0.8, 0.0, 0.0],  # Excitement
    [0.8, 0.2, 0.0, 0.0],  # Joy
])
RATER_NOISE = 0.05
# MediaPipe face-mesh vertices the warp moves.
MOUTH_CORNERS, LOWER_LIP, BROWS = (61, 291), 14, (105, 334, 107, 336)


def base_face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's face (uint8 RGB, SIZE²) and its 478 landmarks."""
    face = util.img_as_ubyte(transform.resize(data.astronaut()[:320, 80:400], (SIZE, SIZE), anti_aliasing=True))
    (points,) = detect_landmarks(face[None])
    if points is None:
        raise RuntimeError("FaceMesh found no face in the astronaut image")
    return face, points[:, :2]


def expression(face: np.ndarray, points: np.ndarray, valence: float, arousal: float, amount: float) -> np.ndarray:
    """``face`` warped by Gaussian displacements at the landmarks (``amount`` in [0, 1] scales them)."""
    moves = [(points[i], np.array([0.0, -7.0 * (2 * valence - 1)])) for i in MOUTH_CORNERS]
    moves.append((points[LOWER_LIP], np.array([0.0, 5.0 * arousal])))
    moves += [(points[i], np.array([0.0, -5.0 * arousal])) for i in BROWS]
    sigma2 = 2 * 5.0**2
    rows, cols = np.mgrid[: face.shape[0], : face.shape[1]].astype(float)
    source = np.stack([rows, cols])  # where each output pixel samples the input: itself, minus the moves
    for (x, y), (dx, dy) in moves:
        weight = amount * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / sigma2)
        source -= np.stack([dy * weight, dx * weight])
    channels = [ndimage.map_coordinates(face[..., c], source, order=1, mode="nearest") for c in range(face.shape[2])]
    return np.stack(channels, axis=-1)


def speak(text: str, arousal: float, path: Path) -> None:
    pitch, speed, amplitude = int(25 + 50 * arousal), int(120 + 80 * arousal), int(80 + 100 * arousal)
    subprocess.run(["espeak-ng", "-p", str(pitch), "-s", str(speed), "-a", str(amplitude), "-w", str(path), text],
                   check=True)


def seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as speech:
        return speech.getnframes() / speech.getframerate()


def write_clip(path: Path, face: np.ndarray, points: np.ndarray, valence: float, arousal: float, text: str,
               work: Path, fps: int = FPS) -> None:
    """Speech over the warped face at ``fps`` frames/s; frames go to ffmpeg through a pipe (no image files)."""
    speak(text, arousal, work / "speech.wav")
    frames = max(2, int(seconds(work / "speech.wav") * fps))
    video = np.stack([expression(face, points, valence, arousal, amount=min(1.0, 2 * n / frames))
                      for n in range(frames)])  # the expression builds up over the first half, then holds
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", f"{SIZE}x{SIZE}", "-framerate", str(fps), "-i", "pipe:0",
                    "-i", str(work / "speech.wav"), "-c:v", "libx264", "-crf", "30", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "24k", "-ac", "1", "-ar", "16000", "-shortest", str(path)],
                   input=video.tobytes(), check=True)


def wording(valence: float, rng: np.random.Generator) -> str:
    pool = POSITIVE if valence > 2 / 3 else NEGATIVE if valence < 1 / 3 else NEUTRAL
    return str(rng.choice(pool))


def expected_labels(valence: np.ndarray, arousal: np.ndarray) -> np.ndarray:
    """The noiseless labels (what infinitely many raters would agree on)."""
    return np.clip(np.column_stack([valence, arousal, 1 - valence, 1 - arousal]) @ MIXTURES.T, 0, 1)


def labels_of(valence: np.ndarray, arousal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, RATER_NOISE, (len(valence), len(EMOTIONS)))
    return np.clip(expected_labels(valence, arousal) + noise, 0, 1)


def oracle_pcc(expected: np.ndarray, observed: np.ndarray) -> float:
    """Mean PCC of the noiseless labels against the observed ones: the ceiling of any model."""
    return float(np.mean([np.corrcoef(expected[:, k], observed[:, k])[0, 1] for k in range(len(EMOTIONS))]))


def missing_tools() -> list[str]:
    """The command-line tools the generator needs that are not on the PATH."""
    return [tool for tool in ("espeak-ng", "ffmpeg") if shutil.which(tool) is None]


def generate(out: Path, clips: int, unseen: int, valid_fraction: float = 0.25, seed: int = 0, fps: int = FPS,
             verbose: bool = True) -> None:
    if missing_tools():
        raise SystemExit(f"{', '.join(missing_tools())} not installed; apt-get install -y espeak-ng ffmpeg")
    rng = np.random.default_rng(seed)
    total = clips + unseen
    valence, arousal = rng.uniform(size=total), rng.uniform(size=total)
    labels = pd.DataFrame(labels_of(valence, arousal, rng), index=np.arange(1, total + 1), columns=list(EMOTIONS))
    texts = [wording(v, rng) for v in valence]
    face, points = base_face()
    (out / "raw").mkdir(parents=True, exist_ok=True)
    (out / "unseen").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for k, clip_id in enumerate(labels.index):
            folder = out / ("raw" if k < clips else "unseen")
            target = folder / f"{clip_stem(clip_id)}.mp4"
            if not target.exists():
                write_clip(target, face, points, valence[k], arousal[k], texts[k], Path(work), fps)
            if verbose:
                print(f"\r{k + 1}/{total}", end="", flush=True)
    if verbose:
        print()
    n_valid = round(clips * valid_fraction)
    write_split(labels.iloc[: clips - n_valid], out / "train_split.csv")
    write_split(labels.iloc[clips - n_valid : clips], out / "valid_split.csv")
    write_split(labels.iloc[clips:], out / "unseen_labels.csv")
    expected = expected_labels(valence, arousal)
    for name, part in (("valid", slice(clips - n_valid, clips)), ("unseen", slice(clips, total))):
        if verbose:
            print(f"oracle mean PCC, {name}: {oracle_pcc(expected[part], labels.to_numpy()[part]):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=120, help="clips in train + valid")
    parser.add_argument("--unseen", type=int, default=16, help="further clips for emimic infer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=int, default=FPS, help="video frames per second")
    args = parser.parse_args()
    generate(args.out, args.clips, args.unseen, seed=args.seed, fps=args.fps)


if __name__ == "__main__":
    main()
