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
  ``m = sum_k y_k a_k / (1 + sum_k y_k)`` (a clip with no emotion sits at the neutral origin).
  Where an observed VAD modality exists (a pretrained acoustic VAD regressor's 3 outputs per clip
  or frame, e.g. ``vad/``), its standardised clip mean is the prior mean instead (an *observed*
  prior), on the clips that have it.
* The training term is ``KL(q(z|x) || p(z))`` averaged over the clips whose acoustic modality is
  present, weighted by ``loss.vad``.

The anchors are approximate positions of the six emotion words in the affective norms
literature (NRC VAD lexicon, Mohammad 2018; Warriner et al. 2013), rescaled from [0, 1] to
[-1, 1] and rounded to one decimal: they encode that Empathic Pain is the one negative-valence
dimension, that Excitement is the most aroused and Determination the most dominant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from emimic.labels import EMOTIONS

VAD_AXES: tuple[str, ...] = ("valence", "arousal", "dominance")

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


def gaussian_kl(mu: Tensor, logvar: Tensor, prior_mean: Tensor, prior_std: float) -> Tensor:
    """Per-row ``KL(N(mu, exp(logvar)) || N(prior_mean, prior_std^2))`` summed over the 3 axes."""
    prior_var = prior_std**2
    kl = 0.5 * ((logvar.exp() + (mu - prior_mean) ** 2) / prior_var - 1.0 - logvar + math.log(prior_var))
    return kl.sum(1)


@dataclass
class VADLatent:
    """The acoustic branch's latent: posterior parameters, the sample used, and where it is defined."""

    mu: Tensor  # (B, 3)
    logvar: Tensor  # (B, 3)
    present: Tensor  # (B,) bool: the acoustic modality exists for the clip
    prior_std: float
    observed: Tensor | None = None  # (B, 3) standardised observed VAD, when the data has it
    observed_present: Tensor | None = None  # (B,) bool


class VADPrior(nn.Module):
    """Maps the acoustic embedding to a 3-d VAD latent and appends it: ``(B, E) -> (B, E + 3)``."""

    def __init__(self, embed_dim: int, prior_std: float):
        super().__init__()
        self.posterior = nn.Linear(embed_dim, 2 * len(VAD_AXES))
        self.prior_std = prior_std
        self.out_dim = embed_dim + len(VAD_AXES)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.posterior(h).chunk(2, dim=1)
        logvar = logvar.clamp(-8.0, 4.0)  # keeps exp() finite early in training
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return torch.cat([h, z], dim=1), mu, logvar


def vad_kl(latent: VADLatent, targets: Tensor) -> Tensor:
    """Mean KL over the clips with the acoustic modality; the observed prior wins where it exists."""
    prior = pseudo_vad(targets, anchor_table().to(targets.device))
    if latent.observed is not None and latent.observed_present is not None:
        prior = torch.where(latent.observed_present[:, None], latent.observed, prior)
    per_clip = gaussian_kl(latent.mu, latent.logvar, prior, latent.prior_std)
    mask = latent.present.to(per_clip.dtype)
    return (per_clip * mask).sum() / mask.sum().clamp(min=1.0)
