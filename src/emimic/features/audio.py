"""Acoustic extractors: eGeMAPS (opensmile) and wav2vec2-family hidden states (transformers).

Both read the clip's 16 kHz mono float audio; a clip without audio is masked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from emimic.errors import ConfigError
from emimic.features.base import (
    ClipInput,
    Extractor,
    Output,
    PretrainedExtractor,
    Result,
    clip_frame,
    frames_frame,
    numbered,
    quiet_transformers,
    register_extractor,
)


@register_extractor("egemaps")
class EgemapsExtractor(Extractor):
    """eGeMAPSv02: 25 low-level descriptors at 100 Hz (``egemaps``) and 88 functionals (``egemaps_func``)."""

    needs = frozenset({"audio"})
    packages = ("opensmile",)

    def outputs(self) -> tuple[Output, ...]:
        return (
            Output("egemaps", "frame", "eGeMAPSv02 low-level descriptors, 25 per 10 ms frame"),
            Output("egemaps_func", "clip", "eGeMAPSv02 functionals, 88 per clip"),
        )

    @property
    def params(self) -> dict[str, Any]:
        return {"feature_set": "eGeMAPSv02"}

    def _load(self) -> None:
        import opensmile

        self._lld = opensmile.Smile(
            feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.LowLevelDescriptors
        )
        self._func = opensmile.Smile(
            feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
        )

    def _process(self, clip: ClipInput) -> dict[str, Result]:
        audio = clip.require_audio()
        rate = clip.media.sample_rate
        lld = self._lld.process_signal(audio, rate)
        func = self._func.process_signal(audio, rate)
        # opensmile indexes by (start, end) Timedelta already: exactly the frame-level convention.
        return {
            "egemaps": lld.astype(np.float32),
            "egemaps_func": clip_frame(func.to_numpy()[0], clip.duration, list(func.columns)),
        }


def normalise_waveform(audio: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance: what Wav2Vec2FeatureExtractor does when ``do_normalize`` is set."""
    return (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)


class HiddenStateExtractor(PretrainedExtractor):
    """Hidden states of a wav2vec2-family speech model at 50 Hz, from a local transformers directory.

    ``layer`` picks the hidden state (0 = the CNN feature projection, -1 = the last transformer
    layer); a list averages several layers. ``model`` overrides ``<model_dir>/<name>``.
    """

    needs = frozenset({"audio"})
    packages = ("transformers", "torch")
    model_example = "`hf download facebook/wav2vec2-base --local-dir DIR/wav2vec2`"

    def __init__(
        self, *, model_dir: str | Path | None = None, model: str | None = None, layer: int | list[int] = -1
    ) -> None:
        super().__init__(model_dir=model_dir, model=model)
        self.layers = [layer] if isinstance(layer, int) else [int(x) for x in layer]
        if not self.layers:
            raise ValueError("layer must name at least one hidden state")

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "layer": self.layers if len(self.layers) > 1 else self.layers[0]}

    def outputs(self) -> tuple[Output, ...]:
        return (Output(self.name, "frame", f"{self.name} hidden states (layers {self.layers} averaged), 50 Hz"),)

    def check(self) -> None:
        config = json.loads((self._model_path() / "config.json").read_text())
        states = int(config.get("num_hidden_layers", 0)) + 1
        bad = [i for i in self.layers if not -states <= i < states]
        if bad:
            raise ConfigError(
                f"{self.name}: layer(s) {bad} out of range; the model has {states} hidden states (0..{states - 1})."
            )

    def _load(self) -> None:
        from transformers import AutoModel

        quiet_transformers()
        path = self._model_path()
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        preprocessor = path / "preprocessor_config.json"
        # HuBERT-base was trained on raw waveforms, wav2vec2-base on normalised ones: follow the model.
        self._normalise = (
            json.loads(preprocessor.read_text()).get("do_normalize", True) if preprocessor.is_file() else True
        )

    def _hidden_states(self, audio: np.ndarray) -> Any:
        """All hidden states of the model, ``(layers + 1)`` tensors of shape ``(1, T, D)``."""
        import torch

        signal = normalise_waveform(audio) if self._normalise else audio
        with torch.inference_mode():
            inputs = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))[None]
            return self._model(inputs, output_hidden_states=True).hidden_states

    def _process(self, clip: ClipInput) -> dict[str, Result]:
        audio = clip.require_audio()
        states = self._hidden_states(audio)
        chosen = np.mean([states[i][0].numpy() for i in self.layers], axis=0)
        return {self.name: frame_features(chosen, len(audio) / clip.media.sample_rate, self.name)}


def frame_features(values: np.ndarray, duration: float, prefix: str) -> Any:
    """Frame-level output of a model that emits ``T`` evenly spaced frames over ``duration`` seconds of audio."""
    edges = np.linspace(0.0, duration, len(values) + 1)
    return frames_frame(values, edges[:-1], edges[1:], numbered(prefix, values.shape[1]))


@register_extractor("wav2vec2")
class Wav2Vec2Extractor(HiddenStateExtractor):
    """wav2vec 2.0 hidden states at 50 Hz (``layer``: an index, or a list to average; default -1, the last)."""


@register_extractor("hubert")
class HubertExtractor(HiddenStateExtractor):
    """HuBERT hidden states at 50 Hz (``layer``: an index, or a list to average; default -1, the last)."""

    model_example = "`hf download facebook/hubert-base-ls960 --local-dir DIR/hubert`"


@register_extractor("wavlm")
class WavLMExtractor(HiddenStateExtractor):
    """WavLM hidden states at 50 Hz (``layer``: an index, or a list to average; default -1, the last)."""

    model_example = "`hf download microsoft/wavlm-base-plus --local-dir DIR/wavlm`"
