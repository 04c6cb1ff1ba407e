"""A seed ensemble inside one model: ``model.members`` EMI models trained side by side.

On a few hundred training clips one model's score depends on its initialisation: on simulated
corpora of 150-600 training clips the validation mean PCC of the same configuration moved by up to
0.09 between training seeds, and the mean of a few seeds' predictions was better than the typical
seed (docs/training.md, "Small corpora"). :class:`EMIEnsemble` makes that one run: every member
starts from its own random initialisation, all see the same batches, each is trained by its own
loss (the mean of the members' losses), and the model predicts the members' mean, which is also
what validation scores and model selection reads. A checkpoint holds every member, so ``predict``,
``evaluate`` and ``infer`` need nothing else.

``members: auto`` sizes the ensemble by the number of training clips (:func:`auto_members`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from emimic.config import with_overrides
from emimic.models.emi import EMIModel, ModelOutput, ModelSpec

if TYPE_CHECKING:
    from emimic.config import ExperimentConfig, ModelConfig
    from emimic.data.dataset import ModalityStats

# (fewest training clips that no longer need it, members below that): measured in docs/training.md.
AUTO_MEMBERS: tuple[tuple[int, int], ...] = ((1000, 5),)


def auto_members(train_clips: int) -> int:
    """Members that ``members: auto`` trains on ``train_clips`` training clips: 5 below 1,000, else 1."""
    return next((members for limit, members in AUTO_MEMBERS if train_clips < limit), 1)


def resolve_members(cfg: ExperimentConfig, train_clips: int) -> ExperimentConfig:
    """``cfg`` with ``model.members: auto`` replaced by its number for ``train_clips`` (what the run records)."""
    if cfg.model.members != "auto":
        return cfg
    return with_overrides(cfg, {"model.members": auto_members(train_clips)})


class EMIEnsemble(nn.Module):
    """``members`` :class:`~emimic.models.emi.EMIModel` s of one config; the output's ``pred`` is their mean and
    its ``members`` their own outputs (see the module docstring)."""

    def __init__(self, spec: ModelSpec, cfg: ModelConfig, members: int):
        super().__init__()
        self.spec = spec
        self.members = nn.ModuleList(EMIModel(spec, cfg) for _ in range(members))

    @property
    def uses_frames(self) -> bool:
        return self.members[0].uses_frames

    def set_statistics(self, stats: Mapping[str, ModalityStats], train_targets: np.ndarray) -> None:
        for member in self.members:
            member.set_statistics(stats, train_targets)

    def forward(self, inputs: Mapping[str, Mapping[str, Tensor]]) -> ModelOutput:
        outputs = [member(inputs) for member in self.members]
        pred = torch.stack([out.pred for out in outputs]).mean(0)
        return ModelOutput(pred=pred, aux={}, present={}, vad=None, members=outputs)


AnyModel = EMIModel | EMIEnsemble  # what build_model returns: one model, or a seed ensemble of them
