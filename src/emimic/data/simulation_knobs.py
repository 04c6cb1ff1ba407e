"""The knobs of the simulated corpus, as plain data: the one list that the settings and the flags read.

:class:`~emimic.data.simulation_settings.SimulationSettings` (pydantic) is built from :data:`KNOBS`,
and ``emimic simulate`` adds one flag per knob; this module imports nothing heavy (no pydantic, numpy
or pandas), so ``emimic simulate --help`` prints at once. The generator is :mod:`emimic.data.simulate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Knob:
    """One setting: its name, default (whose type is the setting's type), bounds and help text."""

    name: str
    default: int | float | bool
    description: str
    bounds: dict[str, float] = field(default_factory=dict)  # pydantic's ge / gt / le / lt

    @property
    def kind(self) -> type:
        return type(self.default)

    @property
    def flag(self) -> str:
        return f"--{self.name.replace('_', '-')}"


def _knob(name: str, default: int | float | bool, description: str = "", **bounds: float) -> Knob:
    return Knob(name, default, description, bounds)


KNOBS: tuple[Knob, ...] = (
    _knob("clips", 2000, "Number of clips over all three splits.", ge=3),
    _knob("seed", 0, "Seed of every random draw; equal seeds give identical files.", ge=0),
    _knob("train_fraction", 0.6, "Share of clips in train_split.csv.", gt=0, lt=1),
    _knob("valid_fraction", 0.2, "Share of clips in valid_split.csv; the rest is test.", gt=0, lt=1),
    _knob("face_dim", 384, "Width of the per-frame face features (vit/).", ge=1),
    _knob("audio_dim", 768, "Width of the per-frame audio features (wav2vec2/).", ge=1),
    _knob("text_dim", 384, "Width of the clip-level transcript embedding (text_emb/).", ge=1),
    _knob("face_fps", 8.0, "Sampled face frames per second.", gt=0),
    _knob("audio_fps", 50.0, "Audio frames per second (wav2vec2 emits about 50).", gt=0),
    _knob("min_duration", 0.5, "Shortest clip, in seconds.", gt=0),
    _knob("max_duration", 1.3, "Longest clip, in seconds (durations are uniform).", gt=0),
    _knob("min_segment", 0.3, "Shortest expressive segment, as a share of the clip.", gt=0, le=1),
    _knob("max_segment", 0.7, "Longest expressive segment, as a share of the clip.", gt=0, le=1),
    _knob("mirror_rate", 0.0, "Share of clips whose face mirrors the stimulus.", ge=0, le=1),
    _knob("missing_face", 0.05, "Share of clips without a vit/ file.", ge=0, lt=1),
    _knob("missing_audio", 0.1, "Share of clips without a wav2vec2/ file.", ge=0, lt=1),
    _knob("missing_text", 0.1, "Share of clips without a transcript file.", ge=0, lt=1),
    _knob("empty_transcript", 0.15,
          "Share of the remaining clips whose transcript is empty (no text_emb/ file).", ge=0, lt=1),
    _knob("label_steepness", 3.0,
          "Slope of the rating-scale saturation: intensity = sigmoid(k * (appraisal - 0.5)).", gt=0),
    _knob("n_raters", 5, "Raters averaged into each label (the most, with min_raters).", ge=1),
    _knob("min_raters", 0,
          "When >= 1, each clip is rated by its own number of raters, uniform in [min_raters, n_raters], so "
          "labels differ in how noisy they are (0: every clip has n_raters).", ge=0),
    _knob("rating_levels", 0,
          "0: continuous ratings; L >= 2: each rater answers one of L evenly spaced levels in [0, 1], rounded "
          "at random so that its expectation is the clipped rating (2: a 0/1 vote, so a label is a fraction k/N"
          " of its N raters, as in Hume-Vidmimic2).", ge=0),
    _knob("rater_noise", 0.4, "Standard deviation of one rater's error, in label units.", ge=0),
    _knob("rater_bias", 0.05, "Spread of each rater's fixed per-emotion bias.", ge=0),
    _knob("feature_noise", 0.05, "Per-frame, per-feature noise relative to the signal.", ge=0),
    _knob("latent_noise", 0.05, "Slow noise on the latent expression units.", ge=0),
    _knob("text_noise", 0.15, "Noise on what a transcript says about the emotional state (text_emb/).", ge=0),
    _knob("transcripts_only", False,
          "Write the transcripts (text/) without precomputed text_emb/, as teams receive them; embed them with "
          "`emimic extract --modalities text_emb`.",),
    _knob("nuisance_strength", 1.0, "Amplitude of emotion-free activity bursts (head motion, speech activity).", ge=0),
    _knob("speaker_strength", 0.3, "Size of each speaker's fixed feature offset.", ge=0),
    _knob("channel_strength", 0.3, "Size of each clip's recording-channel offset.", ge=0),
    _knob("expressiveness_spread", 0.1, "Log-scale spread of how strongly a speaker shows what they feel.", ge=0),
    _knob("setups", 3, "Recording setups (camera + microphone), each speaker uses one.", ge=1),
    _knob("setup_gain_spread", 0.3,
          "Log-range of how strongly each setup passes expressions on to the features.", ge=0),
    _knob("setup_strength", 2.0, "Size of each setup's fixed feature offset (its signature).", ge=0),
    _knob("clips_per_speaker", 8, "Average clips per speaker; speakers never cross splits.", ge=1),
    _knob("latent_units", 32, "Latent expression units behind each modality's features.", ge=2),
    _knob("feature_scale_spread", 1.0, "Log-scale spread of the per-feature scales.", ge=0),
    _knob("feature_offset_spread", 2.0, "Spread of the per-feature offsets.", ge=0),
)
