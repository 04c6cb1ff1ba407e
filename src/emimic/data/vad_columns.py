"""What ``train`` decides about the VAD prior from the data alone: the branch that carries it, the modality whose
three columns serve as its observed mean, and which column is which axis. Torch-free, so that ``validate`` judges a
corpus by the same rules and refuses it in the same words (see :mod:`emimic.models.vad_prior` for the prior itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from emimic.data.layout import FEATURE_SIDECAR
from emimic.errors import DataError

VAD_AXES: tuple[str, ...] = ("valence", "arousal", "dominance")
# Column of each axis in an observed VAD modality when the data names none (checkpoints made before
# columns were matched by name read them in file order).
FILE_ORDER: tuple[int, ...] = tuple(range(len(VAD_AXES)))
# Substrings that mark a modality as acoustic when the config does not name the VAD branch.
AUDIO_HINTS: tuple[str, ...] = ("wav2vec", "hubert", "wavlm", "whisper", "egemaps", "audio", "mfcc", "acoustic")


def acoustic_modality(modalities: Sequence[str]) -> str | None:
    """The branch the VAD prior sits on when the config names none: wav2vec2, else the first audio-like modality."""
    if "wav2vec2" in modalities:
        return "wav2vec2"
    return next((m for m in modalities if any(h in m.lower() for h in AUDIO_HINTS)), None)


def observed_vad_modality(observed: str | None, vad_branch: str | None, available: Mapping[str, int]) -> str | None:
    """The modality whose clip means serve as the observed VAD prior: ``observed`` (``model.vad.observed``) when a
    prior exists (on ``vad_branch``) and the data has it, :data:`VAD_AXES` columns wide ({modality: width})."""
    if vad_branch and observed in available and available[observed] == len(VAD_AXES):
        return observed
    return None


def axis_columns(modality: str, names: Sequence[str] | None) -> tuple[int, ...]:
    """Column of each of :data:`VAD_AXES` in the observed VAD ``modality``, from the feature names recorded
    with it (``emimic extract`` writes audeering's order: arousal, dominance, valence)."""
    record = f"{modality}/{FEATURE_SIDECAR}"
    if names is None:
        raise DataError(
            f"modality {modality!r} has {len(VAD_AXES)} columns but no recorded feature names, so its valence,"
            f" arousal and dominance cannot be told apart; list them in column order as \"feature_names\" in"
            f" {record} (emimic extract writes it), or set model.vad.observed: null in the config."
        )
    lowered = [name.strip().lower() for name in names]
    if sorted(lowered) != sorted(VAD_AXES):
        raise DataError(
            f"{record} names the columns {list(names)}, but an observed VAD prior needs exactly valence, arousal"
            " and dominance; correct feature_names there, or set model.vad.observed: null in the config."
        )
    return tuple(lowered.index(axis) for axis in VAD_AXES)
