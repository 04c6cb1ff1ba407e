"""The VAD-inspired latent prior of the acoustic branch.

Huang et al. shape the acoustic representation with a valence–arousal–dominance (VAD) latent;
their full text is not public, so emimic uses this documented form (see docs/method.md):

* From the acoustic branch embedding ``h`` a small Gaussian posterior
  ``q(z|x) = N(mu(h), diag(sigma(h)^2))`` over ``z = (valence, arousal, dominance)`` is
  computed; training samples ``z`` with the reparameterisation trick, inference uses ``mu``.
  ``z`` is concatenated to ``h`` before fusion, so the fused vector carries an explicit,
  low-dimensional affective coordinate.
* The prior is ``p(z) = N(m, s^2 I)`` with a fixed ``s`` (``vad.prior_std``). Its mean ``m`` is
  the clip's *pseudo-VAD position*: the six emotion intensities weight fixed anchor positions of
  the six emotions in VAD space, together with a neutral anchor at the origin of unit weight,
  ``c = sum_k y_k a_k / (1 + sum_k y_k)`` (a clip with no emotion sits at the neutral origin).
  Where an observed VAD modality exists (a pretrained acoustic VAD regressor's 3 outputs per clip
  or frame, e.g. ``vad/``), its clip mean is the prior mean instead (an *observed* prior), on the
  clips that have it. Its columns are matched to the axes by the feature names recorded with the
  modality (:func:`axis_columns`), never by position.
* Both priors are on one scale, *standard units of the training clips*: each axis is centred and
  divided by its standard deviation over the training clips (of the label centroids ``c``, and of
  the observed clip means), so ``m`` has mean 0 and standard deviation 1 per axis over the training
  set whichever prior supplies it, and ``s`` is a share of that spread.
* The training term is ``KL(q(z|x) || p(z))`` averaged over the clips whose acoustic modality is
  present, weighted by ``loss.vad``.

The anchors are approximate positions of the six emotion words in the affective norms
literature (NRC VAD lexicon, Mohammad 2018; Warriner et al. 2013), rescaled from [0, 1] to
[-1, 1] and rounded to one decimal: they encode that Empathic Pain is the one negative-valence
dimension, that Excitement is the most aroused and Determination the most dominant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from emimic.data.dataset import column_scales
from emimic.data.vad_columns import FILE_ORDER, VAD_AXES
from emimic.data.vad_columns import axis_columns as axis_columns  # read from the data, torch-free (validate uses it)
from emimic.labels import EMOTIONS

# Rows in EMOTIONS order; columns valence, arousal, dominance in [-1, 1].
VAD_ANCHORS: dict[str, tuple[float, float, float]] = {
    "Admiration": (0.8, 0.2, 0.4),
    "Amusement": (0.8, 0.5, 0.3),
    "Determination": (0.4, 0.5, 0.8),
    "Empathic Pain": (-0.7, 0.3, -0.5),
    "Excitement": (0.7, 0.9, 0.4),
    "Joy": (0.9, 0.6, 0.5),
}


def anchor_table() -> Tensor:
    """``(6, 3)`` VAD anchors in :data:`~emimic.labels.EMOTIONS` order."""
    return torch.tensor([VAD_ANCHORS[e] for e in EMOTIONS], dtype=torch.float32)


def pseudo_vad(targets: Tensor, anchors: Tensor) -> Tensor:
    """``(B, 3)`` intensity-weighted centroid of the anchors with a unit-weight neutral anchor at 0."""
    return targets @ anchors / (1.0 + targets.sum(1, keepdim=True))


def label_statistics(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale per axis of the training clips' :func:`pseudo_vad` positions. The scale is the standard
    deviation, or for an axis constant over the training clips (one clip, or labels that never move it) the
    features' rule (:func:`~emimic.data.dataset.column_scales`): the other axes' median, else 1, the anchors' unit.
    A fixed small floor made a validation clip's prior mean 1e5 units away: a validation loss of 1e9."""
    centroids = pseudo_vad(torch.as_tensor(targets, dtype=torch.float64), anchor_table().double()).numpy()
    mean = centroids.mean(0)
    return mean, column_scales(centroids.std(0), mean)


def gaussian_kl(mu: Tensor, logvar: Tensor, prior_mean: Tensor, prior_std: float) -> Tensor:
    """Per-row ``KL(N(mu, exp(logvar)) || N(prior_mean, prior_std^2))`` summed over the 3 axes."""
    prior_var = prior_std**2
    kl = 0.5 * ((logvar.exp() + (mu - prior_mean) ** 2) / prior_var - 1.0 - logvar + math.log(prior_var))
    return kl.sum(1)


@dataclass
class VADLatent:
    """The acoustic branch's latent: posterior parameters, the sample used, where it is defined, and
    the training statistics that put the label-derived prior in standard units."""

    mu: Tensor  # (B, 3)
    logvar: Tensor  # (B, 3)
    present: Tensor  # (B,) bool: the acoustic modality exists for the clip
    prior_std: float
    label_mean: Tensor  # (3,) mean of the training clips' pseudo-VAD positions
    label_std: Tensor  # (3,) their standard deviation
    observed: Tensor | None = None  # (B, 3) observed VAD in standard units, axes in VAD_AXES order
    observed_present: Tensor | None = None  # (B,) bool


class VADPrior(nn.Module):
    """Maps the acoustic embedding to a 3-d VAD latent and appends it: ``(B, E) -> (B, E + 3)``.

    Holds, as buffers saved with the model, the training statistics of both priors and the column of
    each axis in the observed VAD modality."""

    def __init__(self, embed_dim: int, prior_std: float, observed_columns: Sequence[int] = FILE_ORDER):
        super().__init__()
        axes = len(VAD_AXES)
        self.posterior = nn.Linear(embed_dim, 2 * axes)
        self.prior_std = prior_std
        self.out_dim = embed_dim + axes
        self.register_buffer("observed_columns", torch.as_tensor(observed_columns, dtype=torch.long),
                             persistent=False)
        for name, value in (("label_mean", 0.0), ("label_std", 1.0), ("observed_mean", 0.0), ("observed_std", 1.0)):
            self.register_buffer(name, torch.full((axes,), value))

    def set_statistics(self, train_targets: np.ndarray, observed_mean: np.ndarray | None = None,
                       observed_std: np.ndarray | None = None) -> None:
        """Standardise the label prior with ``train_targets``; the observed one with its training clip-mean
        statistics (in file column order, as the feature store holds them)."""
        label_mean, label_std = label_statistics(train_targets)
        self.label_mean.copy_(torch.as_tensor(label_mean))
        self.label_std.copy_(torch.as_tensor(label_std))
        if observed_mean is not None and observed_std is not None:
            columns = self.observed_columns.numpy()
            self.observed_mean.copy_(torch.as_tensor(observed_mean[columns]))
            self.observed_std.copy_(torch.as_tensor(observed_std[columns]))

    def observed_prior(self, pooled: Tensor) -> Tensor:
        """``(B, 3)`` observed VAD in standard units, axes in :data:`VAD_AXES` order, from pooled rows
        ``[mean, std, min, max]`` of the observed modality."""
        return (pooled.index_select(1, self.observed_columns) - self.observed_mean) / self.observed_std

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.posterior(h).chunk(2, dim=1)
        logvar = logvar.clamp(-8.0, 4.0)  # keeps exp() finite early in training
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return torch.cat([h, z], dim=1), mu, logvar


def label_prior(latent: VADLatent, targets: Tensor) -> Tensor:
    """``(B, 3)`` pseudo-VAD positions of ``targets`` in standard units of the training clips."""
    return (pseudo_vad(targets, anchor_table().to(targets.device)) - latent.label_mean) / latent.label_std


def vad_kl(latent: VADLatent, targets: Tensor) -> Tensor:
    """Mean KL over the clips with the acoustic modality; the observed prior wins where it exists."""
    prior = label_prior(latent, targets)
    if latent.observed is not None and latent.observed_present is not None:
        prior = torch.where(latent.observed_present[:, None], latent.observed, prior)
    per_clip = gaussian_kl(latent.mu, latent.logvar, prior, latent.prior_std)
    mask = latent.present.to(per_clip.dtype)
    return (per_clip * mask).sum() / mask.sum().clamp(min=1.0)
