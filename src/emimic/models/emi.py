"""The EMI model: one branch per modality → fusion → shared 6-d head, plus auxiliary heads.

A branch normalises its modality with statistics stored as buffers (so a checkpoint carries
them and works on new data), encodes it (:mod:`emimic.models.encoders`), projects it with an
MLP to the branch embedding and replaces the embedding of clips that lack the modality with a
learned *missing* embedding; for a fusion that reads the encoder's per-step states it also replaces
an absent clip's whole sequence with one learned *missing token*. Modality dropout (training only)
sends a clip down the same path as real missing data, by clearing its ``present`` flag. The
acoustic branch appends its VAD latent (:mod:`emimic.models.vad_prior`). Every branch also feeds a
linear auxiliary head trained on the same targets, which keeps each modality predictive on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from emimic.data.vad_columns import acoustic_modality, observed_vad_modality
from emimic.errors import ConfigError
from emimic.labels import EMOTIONS
from emimic.models.encoders import build_encoder
from emimic.models.fusion import TOKEN_INIT_STD, BranchOutput, BranchShape, build_fusion
from emimic.models.layers import ModalityModules, mlp
from emimic.models.vad_prior import FILE_ORDER, VAD_AXES, VADLatent, VADPrior, axis_columns

if TYPE_CHECKING:
    from emimic.config import ModelConfig
    from emimic.data.dataset import ModalityStats
    from emimic.models.ensemble import AnyModel

@dataclass(frozen=True)
class ModelSpec:
    """What a trained model was built for: recorded in the checkpoint, checked against new data."""

    modalities: tuple[str, ...]
    dims: dict[str, int]
    vad_modality: str | None = None
    observed_vad: str | None = None
    observed_columns: tuple[int, ...] = FILE_ORDER  # column of valence, arousal, dominance in observed_vad

    @property
    def inputs(self) -> list[str]:
        """Every modality the model reads (its branches, and the observed VAD prior if separate)."""
        extra = [self.observed_vad] if self.observed_vad and self.observed_vad not in self.modalities else []
        return [*self.modalities, *extra]

    def to_dict(self) -> dict:
        return {**asdict(self), "modalities": list(self.modalities), "observed_columns": list(self.observed_columns)}

    @classmethod
    def from_dict(cls, data: Mapping) -> ModelSpec:
        return cls(
            modalities=tuple(data["modalities"]),
            dims={str(k): int(v) for k, v in data["dims"].items()},
            vad_modality=data.get("vad_modality"),
            observed_vad=data.get("observed_vad"),
            observed_columns=tuple(data.get("observed_columns", FILE_ORDER)),
        )


def vad_branch(cfg: ModelConfig, modalities: Sequence[str]) -> str | None:
    """The branch among ``modalities`` that carries the VAD prior of ``cfg`` (None: no prior)."""
    return (cfg.vad.modality or acoustic_modality(modalities)) if cfg.vad.enabled else None


def resolve_spec(cfg: ModelConfig, available: Mapping[str, int],
                 feature_names: Mapping[str, Sequence[str] | None] | None = None) -> ModelSpec:
    """Choose the branches and the VAD modalities of ``cfg`` among the ``available`` {modality: width}.

    An observed VAD modality's columns are matched to the axes by their ``feature_names``
    ({modality: names or None}); without names it is refused (:func:`~emimic.models.vad_prior.axis_columns`).
    """
    names = sorted(available)
    chosen = list(cfg.modalities) if cfg.modalities is not None else names
    unknown = [m for m in chosen if m not in available]
    if unknown or not chosen:
        raise ConfigError(f"model.modalities: {unknown or chosen} not in the data; available: {', '.join(names)}.")
    vad_modality = observed = None
    columns = FILE_ORDER
    if cfg.vad.enabled:
        vad_modality = vad_branch(cfg, chosen)
        if vad_modality is not None and vad_modality not in chosen:
            raise ConfigError(f"model.vad.modality: {vad_modality!r} is not a branch; branches: {', '.join(chosen)}.")
        observed_name = cfg.vad.observed
        observed = observed_vad_modality(observed_name, vad_modality, available)
        if observed:
            columns = axis_columns(observed_name, (feature_names or {}).get(observed_name))
    return ModelSpec(tuple(chosen), {m: int(available[m]) for m in chosen}, vad_modality, observed, columns)


def replace_absent_sequences(frames: Tensor, mask: Tensor, present: Tensor, token: Tensor) -> tuple[Tensor, Tensor]:
    """``frames`` ``(B, T, F)`` and ``mask`` ``(B, T)`` where each absent row is the one-step sequence ``[token]``."""
    first_step = torch.zeros_like(mask)
    first_step[:, 0] = True
    mask = torch.where(present[:, None], mask, first_step)
    frames = torch.where(present[:, None, None], frames, first_step.unsqueeze(-1) * token)
    return frames, mask


class Branch(nn.Module):
    """One modality: normalise → encode → MLP projection; absent clips get the missing embedding (and,
    once :meth:`pass_frames` is called, the missing token in place of their per-step states)."""

    def __init__(self, dim: int, cfg: ModelConfig):
        super().__init__()
        self.register_buffer("pooled_mean", torch.zeros(4 * dim))
        self.register_buffer("pooled_std", torch.ones(4 * dim))
        self.register_buffer("frame_mean", torch.zeros(dim))
        self.register_buffer("frame_std", torch.ones(dim))
        self.encoder = build_encoder(dim, cfg.encoder)
        self.project = nn.Sequential(
            nn.Dropout(cfg.branch.dropout),
            mlp(self.encoder.out_dim, cfg.branch.hidden, cfg.branch.embed, cfg.branch.dropout),
            nn.GELU(),
        )
        self.missing = nn.Parameter(torch.zeros(cfg.branch.embed))
        self.register_parameter("missing_frames", None)
        self.out_dim = cfg.branch.embed

    @property
    def uses_frames(self) -> bool:
        return self.encoder.uses_frames

    def set_statistics(self, pooled_mean: np.ndarray, pooled_std: np.ndarray, frame_mean: np.ndarray,
                       frame_std: np.ndarray) -> None:
        for name, value in zip(("pooled_mean", "pooled_std", "frame_mean", "frame_std"),
                               (pooled_mean, pooled_std, frame_mean, frame_std), strict=True):
            getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float32))

    def pass_frames(self) -> None:
        """Hand the fusion the encoder's per-step states, with a learned token for an absent clip's sequence."""
        self.missing_frames = nn.Parameter(TOKEN_INIT_STD * torch.randn(self.encoder.frame_dim))

    def forward(self, inputs: Mapping[str, Tensor], present: Tensor) -> BranchOutput:
        pooled = (inputs["pooled"] - self.pooled_mean) / self.pooled_std
        # frames are normalised inside the encoder's first layer (folded into its weights), never copied
        encoded = self.encoder.encode(pooled, inputs.get("frames"), inputs["lengths"],
                                      norm=(self.frame_mean, self.frame_std))
        h = self.project(encoded.vector)
        embedding = torch.where(present[:, None], h, self.missing.expand_as(h))
        if self.missing_frames is None or encoded.frames is None or encoded.mask is None:
            return BranchOutput(embedding, present)
        frames, mask = replace_absent_sequences(encoded.frames, encoded.mask, present, self.missing_frames)
        return BranchOutput(embedding, present, frames, mask)


@dataclass
class ModelOutput:
    pred: Tensor  # (B, 6) in [0, 1] (a 'clip' head is unclipped in training)
    aux: dict[str, Tensor]  # modality -> (B, 6)
    present: dict[str, Tensor]  # modality -> (B,) bool, after modality dropout
    vad: VADLatent | None
    # an ensemble's output is the mean prediction; each member's own output, which the loss trains, is here
    members: list[ModelOutput] = field(default_factory=list)


class EMIModel(nn.Module):
    """Branches → fusion → shared head; see the module docstring."""

    def __init__(self, spec: ModelSpec, cfg: ModelConfig):
        super().__init__()
        self.spec = spec
        self.output = cfg.head.output
        self.modality_dropout = cfg.modality_dropout
        self.branches = ModalityModules({m: Branch(spec.dims[m], cfg) for m in spec.modalities})
        self.vad = VADPrior(cfg.branch.embed, cfg.vad.prior_std, spec.observed_columns) if spec.vad_modality else None
        widths = [self.vad.out_dim if m == spec.vad_modality and self.vad else cfg.branch.embed
                  for m in spec.modalities]
        self.fusion = build_fusion([BranchShape(m, width, self.branches[m].encoder.frame_dim)
                                    for m, width in zip(spec.modalities, widths, strict=True)], cfg)
        for modality in self.fusion.frame_branches:
            self.branches[modality].pass_frames()
        self.head = nn.Identity() if self.fusion.predicts else nn.Sequential(
            nn.Dropout(cfg.head.dropout), mlp(self.fusion.out_dim, cfg.head.hidden, len(EMOTIONS), cfg.head.dropout))
        self.aux_heads = ModalityModules({m: nn.Linear(w, len(EMOTIONS)) for m, w in zip(spec.modalities, widths,
                                                                                             strict=True)})

    @property
    def uses_frames(self) -> bool:
        return any(b.uses_frames for b in self.branches.values())

    def set_statistics(self, stats: Mapping[str, ModalityStats], train_targets: np.ndarray) -> None:
        """Initialise the normalisation buffers from :func:`emimic.data.feature_statistics` output and the
        VAD priors' standardisation from the training clips' ``(N, 6)`` targets."""
        for modality, branch in self.branches.items():
            s = stats[modality]
            branch.set_statistics(s.pooled_mean, s.pooled_std, s.frame_mean, s.frame_std)
        if self.vad is None:
            return
        if self.spec.observed_vad is None:
            self.vad.set_statistics(train_targets)
            return
        observed, axes = stats[self.spec.observed_vad], len(VAD_AXES)  # the clip-mean block of a pooled row
        self.vad.set_statistics(train_targets, observed.pooled_mean[:axes], observed.pooled_std[:axes])

    def _activate(self, logits: Tensor) -> Tensor:
        if self.output == "sigmoid":
            return torch.sigmoid(logits)
        # clipped linear: gradients flow through the raw output in training; predictions are clipped
        return logits if self.training else logits.clamp(0.0, 1.0)

    def forward(self, inputs: Mapping[str, Mapping[str, Tensor]]) -> ModelOutput:
        outputs, present, aux = [], {}, {}
        latent = None
        for modality, branch in self.branches.items():
            entry = inputs[modality]
            mask = entry["present"]
            if self.training and self.modality_dropout:
                mask = mask & (torch.rand(mask.shape, device=mask.device) >= self.modality_dropout)
            out = branch(entry, mask)
            if self.vad is not None and modality == self.spec.vad_modality:
                out.embedding, mu, logvar = self.vad(out.embedding)
                latent = VADLatent(mu, logvar, mask, self.vad.prior_std, self.vad.label_mean, self.vad.label_std)
                if self.spec.observed_vad:
                    obs = inputs[self.spec.observed_vad]
                    latent.observed = self.vad.observed_prior(obs["pooled"])
                    latent.observed_present = obs["present"]
            outputs.append(out)
            present[modality] = mask
            aux[modality] = self._activate(self.aux_heads[modality](out.embedding))
        pred = self._activate(self.head(self.fusion(outputs)))
        return ModelOutput(pred=pred, aux=aux, present=present, vad=latent)


def build_model(spec: ModelSpec, cfg: ModelConfig) -> AnyModel:
    """The model of ``cfg``: one :class:`EMIModel`, or an :class:`~emimic.models.ensemble.EMIEnsemble` of
    ``cfg.members`` of them (resolve ``members: auto`` first, :func:`~emimic.models.ensemble.resolve_members`)."""
    if cfg.members == "auto":
        raise ConfigError("model.members: 'auto' must be resolved against the training clips before a model is built"
                          " (emimic.models.ensemble.resolve_members).")
    if cfg.members == 1:
        return EMIModel(spec, cfg)
    from emimic.models.ensemble import EMIEnsemble

    return EMIEnsemble(spec, cfg, cfg.members)
