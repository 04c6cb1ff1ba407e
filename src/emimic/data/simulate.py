"""A simulated corpus in the Hume-Vidmimic2 layout, with a known accuracy ceiling.

The real challenge data is licensed and cannot ship with emimic, yet every part of the pipeline
(loader, packer, models, reports) needs a corpus with the same shape and the same difficulties:
variable-length sequences, wide pretrained-looking features at arbitrary scales, missing
modalities, empty transcripts, nuisance speakers and noisy crowd labels. :func:`simulate` writes
such a corpus and returns its *oracle* report: the Pearson correlation between the noise-free
expected label and the observed, rater-averaged label, i.e. the best mean PCC any model could
hope for. Accuracy on the simulated corpus is therefore stated as a fraction of that ceiling.

The generative model is documented in ``docs/simulator.md``; in short, a hidden 6-d emotional
state (plus a valence/arousal/dominance factor derived from it) is expressed in short bursts of
each clip, through a saturating non-linearity and a random "extractor" projection that differs per
modality, scaled by a per-speaker expressiveness and buried under speaker, channel and frame
noise. Model code must read only the corpus files, never this module's internals.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from emimic.data.holdout import MIN_PCC_CLIPS
from emimic.data.simulation_settings import SimulationSettings
from emimic.data.store import EMIMIC_DIR
from emimic.errors import ConfigError, DataError
from emimic.io import TEMP_SUFFIX, atomic_path, save_array, write_text
from emimic.labels import EMOTIONS, clip_stem, write_split

SPLITS: tuple[str, ...] = ("train", "valid", "test")
TRUTH_DIR = ".truth"
ORACLE_FILE = "oracle.json"
# Written before any clip, so a folder is recognised as (an unfinished run of) a simulation.
SETTINGS_FILE = "settings.json"
# Folder names of the written modalities; ``text`` holds transcripts, the others per-clip arrays.
FACE_DIR, AUDIO_DIR, TEXT_DIR, TEXT_EMB_DIR = "vit", "wav2vec2", "text", "text_emb"
# Every entry the simulator writes in a corpus root, and the store packing adds: what ``overwrite`` deletes.
SIMULATED_ENTRIES = (FACE_DIR, AUDIO_DIR, TEXT_DIR, TEXT_EMB_DIR, TRUTH_DIR, ORACLE_FILE, EMIMIC_DIR,
                     *(f"{split}_split.csv" for split in SPLITS))

# Correlations of the latent emotional state (order of EMOTIONS). The positive cluster
# Amusement/Joy/Excitement and the opposition of Empathic Pain to it follow the pattern of
# crowd-rated emotion intensities; Admiration and Determination sit in between.
_CORRELATION = np.array(
    [
        # Adm   Amu   Det   Pain  Exc   Joy
        [1.00, 0.20, 0.35, 0.10, 0.30, 0.30],
        [0.20, 1.00, -0.05, -0.30, 0.55, 0.70],
        [0.35, -0.05, 1.00, 0.05, 0.35, 0.10],
        [0.10, -0.30, 0.05, 1.00, -0.20, -0.35],
        [0.30, 0.55, 0.35, -0.20, 1.00, 0.60],
        [0.30, 0.70, 0.10, -0.35, 0.60, 1.00],
    ]
)
# Valence, arousal and dominance as weighted sums of the six intensities (rows), then tanh.
_VAD_WEIGHTS = np.array(
    [
        [0.6, 0.9, 0.1, -1.4, 0.5, 1.1],
        [0.1, 0.6, 0.8, 0.2, 1.4, 0.4],
        [-0.2, 0.1, 1.4, -0.8, 0.3, 0.2],
    ]
)
FACTORS: tuple[str, ...] = (*EMOTIONS, "valence", "arousal", "dominance")
# How strongly each modality expresses each factor (columns follow FACTORS). Face is strong on
# Joy/Amusement, audio on arousal/dominance (hence Excitement/Determination), text on
# Admiration/Empathic Pain; every emotion is visible, more weakly, in a second modality.
_MODALITY_WEIGHTS: dict[str, np.ndarray] = {
    "face": np.array([0.4, 1.0, 0.3, 0.6, 0.5, 1.0, 0.6, 0.2, 0.0]),
    "audio": np.array([0.2, 0.6, 0.6, 0.3, 0.8, 0.3, 0.3, 1.0, 0.9]),
    "text": np.array([1.0, 0.2, 0.2, 1.0, 0.1, 0.1, 0.3, 0.0, 0.1]),
}
# Phrases a mimicking participant might say, per emotion, and fillers for the rest of a transcript.
_PHRASES: dict[str, tuple[str, ...]] = {
    "Admiration": ("wow, that is impressive", "amazing work", "I really respect that", "so talented"),
    "Amusement": ("haha", "that's hilarious", "so funny", "ha ha ha"),
    "Determination": ("let's do this", "come on", "I can do it", "keep going"),
    "Empathic Pain": ("oh no", "ouch, that hurts", "I'm so sorry", "that must be painful"),
    "Excitement": ("yes!", "let's go!", "this is amazing", "woo"),
    "Joy": ("I love it", "so happy", "wonderful", "this is great"),
}
_FILLERS: tuple[str, ...] = ("um", "okay", "so", "yeah", "hmm", "right", "well", "uh")
# Stream keys of the per-speaker offsets, one per frame-level modality.
MODALITY_KEYS: dict[str, int] = {"face": 0, "audio": 1}


@dataclass
class SimulatedClip:
    """One generated clip; ``None`` marks a modality the clip lacks."""

    clip_id: int
    face: np.ndarray | None
    audio: np.ndarray | None
    transcript: str | None
    text_emb: np.ndarray | None


@dataclass
class _Extractor:
    """The fixed random map from latent expression to one modality's features (an "extractor")."""

    loadings: np.ndarray  # (factors + nuisances, K): latent direction of each factor
    gain: np.ndarray  # (K,) slope of each unit's saturating response
    bias: np.ndarray  # (K,) operating point of each unit
    projection: np.ndarray  # (K, D) units -> features
    scale: np.ndarray  # (D,) per-feature scale: features are not unit-scaled
    offset: np.ndarray  # (D,) per-feature offset

    lateral: np.ndarray  # (K,) bool: units whose sign flips when the participant mirrors the stimulus

    def emit(self, drive: np.ndarray, *, mirrored: bool = False) -> np.ndarray:
        """Features (before noise) of a latent drive of shape (..., factors + nuisances)."""
        latent = drive @ self.loadings
        if mirrored:
            latent = np.where(self.lateral, -latent, latent)
        return np.tanh(latent * self.gain + self.bias) @ self.projection


def _stream(seed: int, *key: int) -> np.random.Generator:
    """An independent generator per purpose (and per clip), so outputs do not depend on chunking."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf, otypes=[float])(x / math.sqrt(2.0)))


def expected_clipped(mean: np.ndarray, sd: float) -> np.ndarray:
    """E[clip(mean + sd * N(0, 1), 0, 1)], the noise-free value of one clipped rating.

    Uses E[clip(X, 0, 1)] = integral over t in [0, 1] of P(X > t) = sd * (G(mean/sd) - G((mean-1)/sd))
    with G(x) = x * Phi(x) + phi(x), the antiderivative of the normal CDF.
    """
    mean = np.asarray(mean, dtype=float)
    if sd == 0:
        return np.clip(mean, 0.0, 1.0)

    def antiderivative(x: np.ndarray) -> np.ndarray:
        return x * _normal_cdf(x) + np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)

    return sd * (antiderivative(mean / sd) - antiderivative((mean - 1.0) / sd))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two vectors; NaN when either is constant (no correlation is defined)."""
    a = np.asarray(a, dtype=float) - np.mean(a)
    b = np.asarray(b, dtype=float) - np.mean(b)
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / denominator) if denominator > 0 else float("nan")


class CorpusGenerator:
    """Draws every clip of a simulated corpus in memory; :func:`simulate` writes them to disk.

    Clip-level quantities (labels, speakers, durations, missing modalities) are drawn up front for
    all clips, which costs a few numbers per clip; frame sequences are drawn one clip at a time
    from a per-clip random stream, so memory stays bounded and any clip can be regenerated alone.
    """

    N_NUISANCES = 2

    def __init__(self, settings: SimulationSettings) -> None:
        self.settings = s = settings
        world = _stream(s.seed, 0)
        n_drive = len(FACTORS) + self.N_NUISANCES
        self.extractors = {
            name: self._make_extractor(world, weights, n_drive, dim)
            for (name, weights), dim in zip(
                _MODALITY_WEIGHTS.items(), (s.face_dim, s.audio_dim, s.text_dim), strict=True
            )
        }
        # A setup scales how visible/audible an expression is (camera distance, microphone gain) and
        # leaves a clear signature offset: the gain is a multiplicative nuisance that a linear model
        # cannot undo, while a non-linear one can in principle read the setup and rescale.
        self.setup_gain = np.exp(np.linspace(-s.setup_gain_spread / 2, s.setup_gain_spread / 2, s.setups))
        self.setup_offset = {
            name: s.setup_strength * world.standard_normal((s.setups, dim))
            for name, dim in (("face", s.face_dim), ("audio", s.audio_dim))
        }
        self.rater_bias = world.normal(0.0, s.rater_bias, size=(s.n_raters, len(EMOTIONS)))
        clips = _stream(s.seed, 1)
        self._draw_clips(clips)

    def _make_extractor(self, rng: np.random.Generator, weights: np.ndarray, n_drive: int, dim: int) -> _Extractor:
        k = self.settings.latent_units
        # Each unit answers mainly to one drive (a factor or a nuisance) and leaks a little of the
        # others, so the emotional state is recoverable but never from a single clean feature.
        loadings = 0.3 * rng.standard_normal((n_drive, k))
        loadings[np.arange(k) % n_drive, np.arange(k)] += 3.0 * rng.choice([-1.0, 1.0], size=k)
        loadings[: len(FACTORS)] *= weights[:, None]
        # Each feature is dominated by one latent unit plus a dense weaker mixture, like the
        # partly disentangled dimensions of a pretrained embedding.
        projection = 0.4 * rng.standard_normal((k, dim)) / math.sqrt(k)
        projection[rng.integers(0, k, size=dim), np.arange(dim)] += rng.choice([-1.0, 1.0], size=dim)
        s = self.settings
        return _Extractor(
            loadings=loadings,
            gain=rng.uniform(1.5, 3.0, size=k),
            bias=rng.normal(0.0, 1.0, size=k),
            projection=projection,
            scale=np.exp(rng.normal(0.0, s.feature_scale_spread, size=dim)),
            offset=rng.normal(0.0, s.feature_offset_spread, size=dim),
            lateral=rng.random(k) < 0.5,
        )

    def _draw_clips(self, rng: np.random.Generator) -> None:
        s = self.settings
        n = s.clips
        n_train = max(1, round(n * s.train_fraction))
        n_valid = max(1, round(n * s.valid_fraction))
        if n_train + n_valid >= n:
            raise ConfigError(f"clips={n} leaves no test clips with these split fractions; use more clips.")
        if min(n_valid, n - n_train - n_valid) < MIN_PCC_CLIPS:  # train would refuse it, the oracle be NaN
            raise ConfigError(f"clips={n} leaves {n_valid} valid and {n - n_train - n_valid} test clip(s) with these"
                              f" split fractions, and a PCC needs at least {MIN_PCC_CLIPS}; use more clips.")
        self.ids = rng.permutation(n) + 1
        self.split = np.repeat(np.array(SPLITS), [n_train, n_valid, n - n_train - n_valid])
        # Speakers never cross splits: a model meets new people at validation time, as in the challenge.
        speaker = np.empty(n, dtype=np.int64)
        first = 0
        for name in SPLITS:
            members = np.flatnonzero(self.split == name)
            pool = max(1, math.ceil(len(members) / s.clips_per_speaker))
            speaker[members] = first + rng.integers(0, pool, size=len(members))
            first += pool
        self.speaker = speaker
        self.n_speakers = first
        self.expressiveness = np.exp(rng.normal(0.0, s.expressiveness_spread, size=first))
        self.speaker_setup = rng.integers(0, s.setups, size=first)

        chol = np.linalg.cholesky(_CORRELATION)
        latent = rng.standard_normal((n, len(EMOTIONS))) @ chol.T
        # Participants display their (unbounded) appraisal; raters answer on a bounded scale that
        # saturates, so the intensity is a steep sigmoid of what the features carry.
        self.intensity = _sigmoid(s.label_steepness * latent - s.label_steepness / 2)
        # What a participant displays is positive and grows exponentially with the appraisal.
        display = 0.4 * np.exp(0.6 * latent)
        vad = np.tanh(0.3 * latent @ _VAD_WEIGHTS.T)
        self.factors = np.concatenate([display, vad], axis=1)
        self.duration = rng.uniform(s.min_duration, s.max_duration, size=n)

        self.has_face = rng.random(n) >= s.missing_face
        self.has_audio = rng.random(n) >= s.missing_audio
        self.has_transcript = rng.random(n) >= s.missing_text
        self.has_words = self.has_transcript & (rng.random(n) >= s.empty_transcript)

        ratings = (
            self.intensity[:, None, :]
            + self.rater_bias[None]
            + rng.normal(0.0, s.rater_noise, size=(n, s.n_raters, len(EMOTIONS)))
        )
        votes = np.clip(ratings, 0.0, 1.0)
        # drawn after everything else, so the default corpus stays what it was
        if s.rating_levels:
            steps = s.rating_levels - 1
            votes = np.floor(votes * steps + rng.random(votes.shape)) / steps
        self.raters = rng.integers(s.min_raters, s.n_raters + 1, size=n) if s.min_raters else np.full(n, s.n_raters)
        rated = (np.arange(s.n_raters)[None, :] < self.raters[:, None])[..., None]  # (n, raters, 1)
        # a level answer's expectation is the clipped rating's, so every scale shares one noise-free label
        per_rater = expected_clipped(self.intensity[:, None, :] + self.rater_bias[None], s.rater_noise)
        self.observed = (votes * rated).sum(axis=1) / self.raters[:, None]
        self.expected = (per_rater * rated).sum(axis=1) / self.raters[:, None]

    def __len__(self) -> int:
        return self.settings.clips

    def labels(self, split: str) -> pd.DataFrame:
        """Observed (rater-averaged) labels of one split, indexed by clip id."""
        rows = self.split == split
        return pd.DataFrame(
            self.observed[rows], index=pd.Index(self.ids[rows], name="Filename"), columns=list(EMOTIONS)
        )

    def clip(self, index: int) -> SimulatedClip:
        """Generate the clip at position ``index`` (0 <= index < clips), independently of all others."""
        s = self.settings
        rng = _stream(s.seed, 2, index)
        speaker = int(self.speaker[index])
        gain = self.expressiveness[speaker]
        duration = float(self.duration[index])
        # Each factor (and each nuisance) shows in one segment of the clip, of random position and
        # length; face and audio share the segments, as a smile and a laugh coincide.
        n_drive = len(FACTORS) + self.N_NUISANCES
        centre = rng.uniform(0.0, duration, size=n_drive)
        half = duration * rng.uniform(s.min_segment, s.max_segment, size=n_drive) / 2
        segments = np.stack([centre - half, centre + half], axis=1)
        # Nuisance activity is louder for expressive speakers, so a model can estimate the
        # expressiveness gain from the features themselves (and, in principle, undo it).
        amplitude = np.concatenate(
            [gain * self.factors[index], gain * s.nuisance_strength * rng.uniform(0.2, 1.0, self.N_NUISANCES)]
        )
        mirrored = bool(rng.random() < s.mirror_rate)
        channel = rng.standard_normal(2)
        face = audio = text_emb = None
        if self.has_face[index]:
            face = self._sequence(rng, speaker, "face", s.face_fps, duration, segments, amplitude, channel[0], mirrored)
        if self.has_audio[index]:
            audio = self._sequence(rng, speaker, "audio", s.audio_fps, duration, segments, amplitude, channel[1])
        transcript = None
        if self.has_transcript[index]:
            transcript = self._transcript(rng, index) if self.has_words[index] else ""
        if self.has_words[index]:
            text = self.extractors["text"]
            drive = np.concatenate([self.factors[index], np.zeros(self.N_NUISANCES)])
            drive += s.text_noise * rng.standard_normal(drive.shape)
            vector = text.emit(drive) + s.feature_noise * rng.standard_normal(s.text_dim)
            text_emb = (vector * text.scale + text.offset).astype(np.float32)
        return SimulatedClip(int(self.ids[index]), face, audio, transcript, text_emb)

    def _sequence(
        self,
        rng: np.random.Generator,
        speaker: int,
        modality: str,
        fps: float,
        duration: float,
        segments: np.ndarray,
        amplitude: np.ndarray,
        channel: float,
        mirrored: bool = False,
    ) -> np.ndarray:
        s = self.settings
        extractor = self.extractors[modality]
        dim = extractor.projection.shape[1]
        frames = max(2, round(duration * fps))
        t = (np.arange(frames) + 0.5) / fps
        # Soft-edged boxes: 1 inside a drive's segment, 0 outside, 0.1 s ramps.
        envelope = _sigmoid((t[:, None] - segments[None, :, 0]) / 0.05) * _sigmoid(
            (segments[None, :, 1] - t[:, None]) / 0.05
        )
        if modality == "audio":
            # Vocal expression is modulated (laughter, emphatic syllables at 3-6 Hz), so it
            # averages out over time while its spread and extremes keep it.
            rate = rng.uniform(3.0, 6.0)
            carrier = np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
            envelope[:, : len(EMOTIONS)] *= carrier[:, None]
        drive = envelope * amplitude * self.setup_gain[self.speaker_setup[speaker]]
        drive += s.latent_noise * _slow_noise(rng, frames, drive.shape[1], max(1, round(0.2 * fps)))
        features = extractor.emit(drive, mirrored=mirrored)
        features += s.feature_noise * rng.standard_normal((frames, dim))
        features += self.setup_offset[modality][self.speaker_setup[speaker]]
        # Speaker offsets come from the speaker's own stream, so they are shared by all their clips.
        features += s.speaker_strength * _stream(s.seed, 3, MODALITY_KEYS[modality], speaker).standard_normal(dim)
        features += s.channel_strength * channel * rng.standard_normal(dim)
        return (features * extractor.scale + extractor.offset).astype(np.float32)

    def _transcript(self, rng: np.random.Generator, index: int) -> str:
        intensity = self.intensity[index]
        weights = np.append(intensity**2, 0.15)
        weights /= weights.sum()
        words = []
        for choice in rng.choice(len(weights), size=1 + rng.poisson(2.0 * intensity.max()), p=weights):
            if choice == len(EMOTIONS):
                words.append(_FILLERS[rng.integers(len(_FILLERS))])
            else:
                phrases = _PHRASES[EMOTIONS[choice]]
                words.append(phrases[rng.integers(len(phrases))])
        return " ".join(words)

    def oracle(self) -> dict[str, Any]:
        """Oracle PCC per split and emotion: noise-free expected label vs. observed label."""
        per_split: dict[str, dict[str, float]] = {}
        for split in SPLITS:
            rows = self.split == split
            per_split[split] = {
                emotion: pearson(self.expected[rows, k], self.observed[rows, k]) for k, emotion in enumerate(EMOTIONS)
            }
        return {
            "oracle_mean_pcc": {split: float(np.nanmean(list(v.values()))) for split, v in per_split.items()},
            "oracle_pcc": per_split,
            "clips": {split: int((self.split == split).sum()) for split in SPLITS},
            "speakers": self.n_speakers,
            "coverage": {
                FACE_DIR: float(self.has_face.mean()),
                AUDIO_DIR: float(self.has_audio.mean()),
                TEXT_DIR: float(self.has_transcript.mean()),
                TEXT_EMB_DIR: float(self.has_words.mean()),
            },
            "settings": self.settings.model_dump(),
        }


def _slow_noise(rng: np.random.Generator, frames: int, units: int, window: int) -> np.ndarray:
    """Unit-variance noise correlated over ``window`` frames (a moving sum of white noise)."""
    white = rng.standard_normal((frames + window - 1, units))
    summed = np.concatenate([np.zeros((1, units)), np.cumsum(white, axis=0)])
    return (summed[window:] - summed[:-window]) / math.sqrt(window)


def _differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> str:
    changed = [k for k in sorted(set(recorded) | set(wanted)) if recorded.get(k) != wanted.get(k)]
    shown = ", ".join(f"{k} {recorded.get(k)} there, {wanted.get(k)} here" for k in changed[:3])
    return shown + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")


@dataclass(frozen=True)
class ExistingCorpus:
    """What a folder holds, seen by a simulation with given settings: ``state`` is ``"none"`` (missing or empty),
    ``"finished"`` or ``"unfinished"`` (a simulation with these very settings) or ``"replace"`` (one with other
    settings, which ``overwrite`` replaces; ``differences`` says how they differ, e.g. "seed 0 there, 1 here")."""

    state: str
    differences: str = ""


def existing_simulation(out: str | Path, settings: SimulationSettings, *, overwrite: bool = False,
                        offer_overwrite: bool = False) -> ExistingCorpus:
    """What ``out`` holds (see :class:`ExistingCorpus`). Anything else raises a :class:`DataError`, since writing
    there would mix two corpora (old clips survive where the new corpus has none), and so does a simulation with
    other settings unless ``overwrite``, and then too when it holds an entry the simulator did not write.
    ``offer_overwrite``: the caller has an ``--overwrite`` option, which the refusal then names."""
    root = Path(out)
    if not root.exists():
        return ExistingCorpus("none")
    if not root.is_dir():
        raise DataError(f"{root}: is a file, not a folder; choose another --out.")
    record = root / TRUTH_DIR / SETTINGS_FILE
    if not record.is_file():
        if any(root.iterdir()):
            raise DataError(f"{root}: is not empty and holds no simulated corpus; choose a new or empty --out folder.")
        return ExistingCorpus("none")
    differences = _recorded_differences(record, settings)
    if not differences:
        return ExistingCorpus("finished" if (root / ORACLE_FILE).is_file() else "unfinished")
    if not overwrite:
        remedies = "choose a new --out folder, delete this one, or pass --overwrite to simulate it anew" \
            if offer_overwrite else "choose a new --out folder or delete this one"
        raise DataError(f"{root}: holds a simulation with other settings ({differences}); {remedies}.")
    foreign = sorted(entry.name for entry in root.iterdir() if not _written_by_simulator(entry.name))
    if foreign:
        raise DataError(f"{root / foreign[0]}: was not written by the simulator, so the simulation in {root} is not"
                        " replaced; move it out of the folder, or choose a new --out folder.")
    return ExistingCorpus("replace", differences)


def _written_by_simulator(name: str) -> bool:
    """Whether an entry of a corpus root is one the simulator (or packing) writes, or the temporary file of one."""
    return name in SIMULATED_ENTRIES or (
        name.endswith(TEMP_SUFFIX) and any(name.startswith(f".{entry}.") for entry in SIMULATED_ENTRIES)
    )


def _clear_simulation(root: Path) -> None:
    """Delete every entry the simulator wrote in ``root`` (the folder itself stays: it may be a link). Its settings
    go last, so an interrupted delete leaves a folder still known as a simulation, which is cleared again."""
    truth, record = root / TRUTH_DIR, root / TRUTH_DIR / SETTINGS_FILE
    entries = [entry for entry in root.iterdir() if entry.name != TRUTH_DIR]
    entries += [entry for entry in truth.iterdir() if entry != record]
    for entry in [*entries, record, truth]:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)


def _recorded_differences(record: Path, settings: SimulationSettings) -> str:
    """The settings recorded in a corpus's ``record`` that differ from ``settings``, in words ("" when none)."""
    try:
        recorded = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{record}: cannot be read ({exc}); choose a new --out folder.") from None
    # A setting added since that corpus was written had its default then.
    recorded = {**json.loads(SimulationSettings().model_dump_json()), **recorded}
    return _differences(recorded, json.loads(settings.model_dump_json()))


def load_oracle(root: str | Path) -> dict[str, Any] | None:
    """The oracle report :func:`simulate` wrote into a dataset root, or None for a corpus that is not simulated."""
    path = Path(root) / ORACLE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def simulate(out: str | Path, settings: SimulationSettings | None = None, *, progress: bool = True,
             overwrite: bool = False) -> dict[str, Any]:
    """Write a simulated corpus under ``out`` and return its oracle report (also in ``oracle.json``).

    ``out`` must be new, empty, or a simulation with the same settings: a finished one is left as
    it is (its stored report is returned, no file is rewritten), an interrupted one is written
    again in full. With ``overwrite``, a simulation with other settings is deleted (what the simulator
    wrote, :data:`SIMULATED_ENTRIES`; a folder holding anything else is refused) and written anew.
    Any other folder is refused with a :class:`DataError` (see :func:`existing_simulation`).

    Layout: ``{train,valid}_split.csv`` with labels, ``test_split.csv`` with ``Filename`` only (its
    labels go to ``.truth/test_labels.csv``, which no training code reads), and per-clip files
    ``vit/<id>.pkl`` (T, face_dim), ``wav2vec2/<id>.pkl`` (T, audio_dim), ``text/<id>.txt`` and
    ``text_emb/<id>.pkl`` (text_dim,; not with ``transcripts_only``). A clip that lacks a modality has no file
    in its folder.
    ``.truth/clips.csv`` records each clip's split, speaker, setup, duration and expected labels.
    Every file is written atomically and is a pure function of the settings (same seed, same bytes).
    """
    settings = settings or SimulationSettings()
    root = Path(out)
    existing = existing_simulation(root, settings, overwrite=overwrite)
    if existing.state == "finished":
        return json.loads((root / ORACLE_FILE).read_text(encoding="utf-8"))
    if existing.state == "replace":
        _clear_simulation(root)
    generator = CorpusGenerator(settings)
    for name in (FACE_DIR, AUDIO_DIR, TEXT_DIR, TRUTH_DIR, *(() if settings.transcripts_only else (TEXT_EMB_DIR,))):
        (root / name).mkdir(parents=True, exist_ok=True)
    write_text(root / TRUTH_DIR / SETTINGS_FILE, settings.model_dump_json(indent=2) + "\n")

    columns = [
        TextColumn("[bold]simulating[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(str(root), total=len(generator))
        for index in range(len(generator)):
            clip = generator.clip(index)
            stem = clip_stem(clip.clip_id)
            if clip.face is not None:
                save_array(root / FACE_DIR / f"{stem}.pkl", clip.face)
            if clip.audio is not None:
                save_array(root / AUDIO_DIR / f"{stem}.pkl", clip.audio)
            if clip.transcript is not None:
                write_text(root / TEXT_DIR / f"{stem}.txt", clip.transcript)
            if clip.text_emb is not None and not settings.transcripts_only:
                save_array(root / TEXT_EMB_DIR / f"{stem}.pkl", clip.text_emb)
            bar.advance(task)

    write_split(generator.labels("train"), root / "train_split.csv")
    write_split(generator.labels("valid"), root / "valid_split.csv")
    test = generator.labels("test")
    write_split(test.drop(columns=list(EMOTIONS)), root / "test_split.csv")
    write_split(test, root / TRUTH_DIR / "test_labels.csv")
    _write_truth_table(generator, root / TRUTH_DIR / "clips.csv")

    report = generator.oracle()
    with atomic_path(root / ORACLE_FILE) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _write_truth_table(generator: CorpusGenerator, path: Path) -> None:
    """Per-clip ground truth for analyses (never for training): split, nuisances, expected labels."""
    table = pd.DataFrame(
        {
            "split": generator.split,
            "speaker": generator.speaker,
            "setup": generator.speaker_setup[generator.speaker],
            "duration": generator.duration.round(4),
            "raters": generator.raters,
            **{f"expected {e}": generator.expected[:, k] for k, e in enumerate(EMOTIONS)},
        },
        index=pd.Index(generator.ids, name="Filename"),
    )
    with atomic_path(path) as tmp:
        table.sort_index().to_csv(tmp, float_format="%.6f")
