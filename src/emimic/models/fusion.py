"""Fusion of branch embeddings: the registry every fusion plugs into.

The contract (after MultiBench): a fusion is built from the list of branch widths, in the fixed
modality order, declares ``out_dim`` and maps ``list[(B, d_i)] -> (B, out_dim)``. The reference
method uses feature-level concatenation; gated, cross-attention, text-anchored, tensor and late
fusions implement the same contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from emimic.registry import FUSIONS

if TYPE_CHECKING:
    from emimic.config import ModelConfig



class Fusion(nn.Module):
    """Base class: ``forward(list of (B, d_i)) -> (B, out_dim)``."""

    out_dim: int

    def __init__(self, in_dims: list[int], cfg: ModelConfig):
        super().__init__()
        self.in_dims = list(in_dims)

    def forward(self, feats: list[Tensor]) -> Tensor:
        raise NotImplementedError


@FUSIONS.register("concat")
class ConcatFusion(Fusion):
    """Feature-level concatenation (the reference method)."""

    def __init__(self, in_dims: list[int], cfg: ModelConfig):
        super().__init__(in_dims, cfg)
        self.out_dim = sum(in_dims)

    def forward(self, feats: list[Tensor]) -> Tensor:
        return torch.cat(feats, dim=1)


def build_fusion(in_dims: list[int], cfg: ModelConfig) -> Fusion:
    return FUSIONS.get(cfg.fusion)(in_dims, cfg)
