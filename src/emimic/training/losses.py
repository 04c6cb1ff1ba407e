"""The multi-objective loss: ``w_mse·MSE + w_pcc·(1 − mean PCC) [+ w_ccc·(1 − mean CCC)]``
on the shared head, plus ``w_aux`` times the same objective on every branch's auxiliary head
(each on the clips where its modality is present), plus ``w_vad`` times the VAD prior's KL.

The per-target terms form a registry (:data:`LOSS_TERMS`), so a config names them and an unknown
name is an error listing the available ones. PCC and CCC are computed per dimension over the
batch and averaged over the six dimensions; a dimension whose predictions or targets are
constant over the batch contributes a correlation of 0, never NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from emimic.models.vad_prior import vad_kl
from emimic.registry import LOSS_TERMS

if TYPE_CHECKING:
    from emimic.config import LossConfig
    from emimic.models.emi import ModelOutput

LossTerm = Callable[[Tensor, Tensor], Tensor]

EPS = 1e-8


def batch_pcc(pred: Tensor, target: Tensor) -> Tensor:
    """``(D,)`` Pearson correlation of each column over the batch; 0 where either side is constant.

    The variances are floored inside the square root, so a constant column has zero correlation
    and a finite gradient (a ``where`` after a ``sqrt(0)`` would still back-propagate NaN)."""
    dp = pred - pred.mean(0)
    dt = target - target.mean(0)
    cov = (dp * dt).mean(0)
    return cov / torch.sqrt((dp.pow(2).mean(0) + EPS) * (dt.pow(2).mean(0) + EPS))


def batch_ccc(pred: Tensor, target: Tensor) -> Tensor:
    """``(D,)`` Lin's concordance correlation of each column over the batch."""
    mp, mt = pred.mean(0), target.mean(0)
    vp, vt = pred.var(0, unbiased=False), target.var(0, unbiased=False)
    cov = ((pred - mp) * (target - mt)).mean(0)
    return 2 * cov / (vp + vt + (mp - mt) ** 2 + EPS)


@LOSS_TERMS.register("mse")
def mse_term(pred: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(pred, target)


@LOSS_TERMS.register("pcc")
def pcc_term(pred: Tensor, target: Tensor) -> Tensor:
    return 1.0 - batch_pcc(pred, target).mean()


@LOSS_TERMS.register("ccc")
def ccc_term(pred: Tensor, target: Tensor) -> Tensor:
    return 1.0 - batch_ccc(pred, target).mean()


class EMILoss:
    """Combines the terms of a :class:`~emimic.config.LossConfig`; returns each part for logging."""

    def __init__(self, cfg: LossConfig):
        self.terms = [(LOSS_TERMS.get(name), weight) for name, weight in cfg.terms.items() if weight]
        self.aux_weight = cfg.aux
        self.vad_weight = cfg.vad

    def objective(self, pred: Tensor, target: Tensor) -> Tensor:
        return sum((w * term(pred, target) for term, w in self.terms), start=pred.new_zeros(()))

    def __call__(self, output: ModelOutput, targets: Tensor) -> dict[str, Tensor]:
        main = self.objective(output.pred, targets)
        aux = main.new_zeros(())
        if self.aux_weight:
            for modality, pred in output.aux.items():
                rows = output.present[modality]
                # a correlation needs two clips; a branch absent from the whole batch has nothing to learn
                if int(rows.sum()) >= 2:
                    aux = aux + self.objective(pred[rows], targets[rows])
        vad = main.new_zeros(())
        if self.vad_weight and output.vad is not None:
            vad = vad_kl(output.vad, targets)
        total = main + self.aux_weight * aux + self.vad_weight * vad
        return {"loss": total, "main": main, "aux": aux, "vad": vad}
