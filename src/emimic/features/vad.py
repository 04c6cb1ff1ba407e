"""Acoustic valence–arousal–dominance from a wav2vec2 dimensional speech-emotion regressor.

The architecture is the one of audeering's ``wav2vec2-large-robust-12-ft-emotion-msp-dim`` (used
by ABAW EMI teams): a ``Wav2Vec2Model`` whose last hidden states are mean-pooled over time and fed
to a regression head (dense → tanh → 3 outputs). Its weights load from a local directory
(``<model_dir>/vad`` or ``--option vad.model=PATH``). Outputs:

- ``vad_clip`` ``(3,)``: the model's clip-level estimate (its training condition);
- ``vad`` ``(T, 3)``: the same head over mean-pooled windows (``window`` s, every ``hop`` s), a
  trajectory for temporal models;
- ``vad_emb`` ``(D,)``: the pooled hidden state the head reads (the "1024" of the 1024+3 features).

The three columns follow the model's own label order (audeering's: arousal, dominance, valence),
which the output folder's ``_extractor.json`` records as ``feature_names``; readers match the axes
by those names (:func:`emimic.models.vad_prior.axis_columns`), never by position.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from emimic.errors import ConfigError
from emimic.features.audio import normalise_waveform
from emimic.features.base import (
    ClipInput,
    Output,
    PretrainedExtractor,
    Result,
    clip_frame,
    frames_frame,
    numbered,
    quiet_transformers,
    register_extractor,
)

# audeering's msp-dim label order; used when a config carries only generic LABEL_i names.
DEFAULT_LABELS: tuple[str, ...] = ("arousal", "dominance", "valence")


@functools.cache
def dimensional_model_class() -> type:
    """The transformers class of the regressor (built on first use so importing emimic stays light)."""
    import torch
    from torch import nn
    from transformers import Wav2Vec2Model, Wav2Vec2PreTrainedModel

    class RegressionHead(nn.Module):
        def __init__(self, config: Any) -> None:
            super().__init__()
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
            self.dropout = nn.Dropout(config.final_dropout)
            self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(x)))))

    class DimensionalEmotionModel(Wav2Vec2PreTrainedModel):
        """Wav2Vec2Model + mean pooling + regression head; parameter names match audeering's checkpoint."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.wav2vec2 = Wav2Vec2Model(config)
            self.classifier = RegressionHead(config)
            self.post_init()

        def forward(self, input_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.wav2vec2(input_values).last_hidden_state
            return hidden, self.classifier(hidden.mean(dim=1))

    return DimensionalEmotionModel


@register_extractor("vad")
class VadExtractor(PretrainedExtractor):
    """Valence/arousal/dominance per clip (``vad_clip``), over time (``vad``) and the pooled embedding (``vad_emb``)."""

    needs = frozenset({"audio"})
    packages = ("transformers", "torch")
    model_example = "`hf download audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim --local-dir DIR/vad`"

    def __init__(
        self,
        *,
        model_dir: str | Path | None = None,
        model: str | None = None,
        window: float = 1.0,
        hop: float = 0.5,
    ) -> None:
        super().__init__(model_dir=model_dir, model=model)
        if window <= 0 or hop <= 0:
            raise ValueError(f"window and hop must be positive, got {window} and {hop}")
        self.window, self.hop = float(window), float(hop)

    def outputs(self) -> tuple[Output, ...]:
        return (
            Output("vad", "frame", f"valence, arousal, dominance (columns: feature_names) over {self.window} s"
                   f" windows every {self.hop} s"),
            Output("vad_clip", "clip", "valence, arousal, dominance (columns: feature_names) of the whole clip"),
            Output("vad_emb", "clip", "mean-pooled hidden state read by the regression head"),
        )

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "window": self.window, "hop": self.hop}

    def check(self) -> None:
        config = json.loads((self._model_path() / "config.json").read_text())
        if int(config.get("num_labels", len(config.get("id2label", {})))) != 3:
            raise ConfigError(
                f"vad: the model at {self._model_path()} does not have 3 outputs (valence, arousal, dominance)."
            )

    def _load(self) -> None:
        quiet_transformers()
        path = self._model_path()
        self._model = dimensional_model_class().from_pretrained(path, local_files_only=True).eval()
        names = [str(self._model.config.id2label[i]).lower() for i in range(3)]
        self._labels = names if set(names) == set(DEFAULT_LABELS) else list(DEFAULT_LABELS)

    def _process(self, clip: ClipInput) -> dict[str, Result]:
        import torch

        audio = normalise_waveform(clip.require_audio())
        seconds = len(audio) / clip.media.sample_rate
        with torch.inference_mode():
            hidden, logits = self._model(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None])
            hidden = hidden[0]
            rate = hidden.shape[0] / seconds  # hidden states per second of audio (50 for wav2vec2)
            width = max(1, round(self.window * rate))
            step = max(1, round(self.hop * rate))
            starts = list(range(0, max(1, hidden.shape[0] - width + 1), step))
            pooled = torch.stack([hidden[s : s + width].mean(dim=0) for s in starts])
            over_time = self._model.classifier(pooled).numpy()
            embedding = hidden.mean(dim=0).numpy()
        begin = np.asarray(starts, dtype=float) / rate
        end = np.minimum(begin + width / rate, seconds)
        return {
            "vad": frames_frame(over_time, begin, end, self._labels),
            "vad_clip": clip_frame(logits[0].numpy(), clip.duration, self._labels),
            "vad_emb": clip_frame(embedding, clip.duration, numbered("vad_emb", embedding.shape[0])),
        }
