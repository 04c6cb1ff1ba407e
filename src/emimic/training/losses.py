"""The multi-objective loss: ``w_mse·MSE + w_pcc·(1 − mean PCC) [+ w_ccc·(1 − mean CCC)]``
on the shared head, plus ``w_aux`` times the same objective on every branch's auxiliary head
(each on the clips where its modality is present), plus ``w_vad`` times the VAD prior's KL.

The per-target terms form a registry (:data:`LOSS_TERMS`), so a config names them and an unknown
name is an error listing the available ones. Each term gives one value per dimension; PCC and CCC
are computed per dimension over the batch; a dimension whose predictions or targets are constant
over the batch contributes a correlation of 0, never NaN.

Two options weight the objective (both off in the paper preset, see docs/training.md):
``loss.sample_weights`` weights clips (every mean, variance and covariance over the batch becomes a
weighted one, e.g. by the square root of a clip's rater count, see :mod:`emimic.training.weights`),
and ``loss.emotion_weights`` weights the six dimensions when they are averaged (normalised to mean 1,
so the loss keeps its scale).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from emimic.labels import EMOTIONS
from emimic.models.vad_prior import vad_kl
from emimic.registry import LOSS_TERMS

if TYPE_CHECKING:
    from emimic.config import LossConfig
    from emimic.models.emi import ModelOutput

# (pred (B, D), target (B, D), clip weights (B,) summing to 1, or None for equal weights) -> (D,)
LossTerm = Callable[[Tensor, Tensor, Tensor | None], Tensor]

EPS = 1e-8


def batch_mean(values: Tensor, weight: Tensor | None = None) -> Tensor:
    """``(D,)`` mean of each column over the batch, weighted by ``weight`` (summing to 1) when given."""
    return values.mean(0) if weight is None else (weight[:, None] * values).sum(0)


def batch_pcc(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """``(D,)`` (weighted) Pearson correlation of each column over the batch; 0 where either side is constant.

    The variances are floored inside the square root, so a constant column has zero correlation
    and a finite gradient (a ``where`` after a ``sqrt(0)`` would still back-propagate NaN)."""
    dp = pred - batch_mean(pred, weight)
    dt = target - batch_mean(target, weight)
    cov = batch_mean(dp * dt, weight)
    return cov / torch.sqrt((batch_mean(dp.pow(2), weight) + EPS) * (batch_mean(dt.pow(2), weight) + EPS))


def batch_ccc(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """``(D,)`` (weighted) Lin's concordance correlation of each column over the batch."""
    mp, mt = batch_mean(pred, weight), batch_mean(target, weight)
    vp, vt = batch_mean((pred - mp) ** 2, weight), batch_mean((target - mt) ** 2, weight)
    cov = batch_mean((pred - mp) * (target - mt), weight)
    return 2 * cov / (vp + vt + (mp - mt) ** 2 + EPS)


@LOSS_TERMS.register("mse")
def mse_term(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    return batch_mean((pred - target) ** 2, weight)


@LOSS_TERMS.register("pcc")
def pcc_term(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    return 1.0 - batch_pcc(pred, target, weight)


@LOSS_TERMS.register("ccc")
def ccc_term(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    return 1.0 - batch_ccc(pred, target, weight)


def normalised(weight: Tensor) -> Tensor:
    return weight / weight.sum()


class EMILoss:
    """Combines the terms of a :class:`~emimic.config.LossConfig`; returns each part for logging."""

    def __init__(self, cfg: LossConfig):
        self.terms = [(LOSS_TERMS.get(name), weight) for name, weight in cfg.terms.items() if weight]
        self.aux_weight = cfg.aux
        self.vad_weight = cfg.vad
        per_emotion = torch.tensor([cfg.emotion_weights.get(e, 1.0) for e in EMOTIONS])
        self.emotion_weights = per_emotion / per_emotion.mean()

    def objective(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """The weighted terms, averaged over the dimensions with the emotion weights; ``weight``: per clip."""
        per_dim = sum((w * term(pred, target, weight) for term, w in self.terms), start=pred.new_zeros(()))
        return (per_dim * self.emotion_weights.to(per_dim)).mean()

    def __call__(self, output: ModelOutput, targets: Tensor, weights: Tensor | None = None) -> dict[str, Tensor]:
        """Loss parts of a batch; ``weights``: optional ``(B,)`` clip weights (any positive scale). An ensemble's
        parts are the means of its members' own: each member is trained as if alone."""
        if output.members:
            parts = [self(member, targets, weights) for member in output.members]
            return {name: torch.stack([p[name] for p in parts]).mean() for name in parts[0]}
        main = self.objective(output.pred, targets, None if weights is None else normalised(weights))
        aux = main.new_zeros(())
        if self.aux_weight:
            for modality, pred in output.aux.items():
                rows = output.present[modality]
                # a correlation needs two clips; a branch absent from the whole batch has nothing to learn
                if int(rows.sum()) >= 2:
                    aux = aux + self.objective(pred[rows], targets[rows],
                                               None if weights is None else normalised(weights[rows]))
        vad = main.new_zeros(())
        if self.vad_weight and output.vad is not None:
            vad = vad_kl(output.vad, targets)
        total = main + self.aux_weight * aux + self.vad_weight * vad
        return {"loss": total, "main": main, "aux": aux, "vad": vad}
