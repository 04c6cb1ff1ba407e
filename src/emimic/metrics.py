"""The EMI challenge metric: Pearson correlation per emotion over all clips of a split, and their mean.

NaN-safe: a clip whose prediction or label is not finite is left out of that dimension.
Constant-safe: a dimension whose predictions (or labels) are constant scores 0, not NaN, so a
degenerate model is reported as uninformative rather than breaking model selection.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional import pearson_corrcoef

from emimic.labels import EMOTIONS

# Below this standard deviation a column counts as constant.
CONSTANT_STD = 1e-9


def pearson_per_dimension(preds: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(D,)`` Pearson correlation of each column of ``(N, D)`` predictions with the targets."""
    p = torch.as_tensor(preds, dtype=torch.float64)
    t = torch.as_tensor(targets, dtype=torch.float64)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"predictions {tuple(p.shape)} and targets {tuple(t.shape)} must be the same (N, D)")
    out = np.zeros(p.shape[1])
    for d in range(p.shape[1]):
        keep = torch.isfinite(p[:, d]) & torch.isfinite(t[:, d])
        pd_, td = p[keep, d], t[keep, d]
        if len(pd_) < 2 or pd_.std() < CONSTANT_STD or td.std() < CONSTANT_STD:
            continue
        out[d] = float(pearson_corrcoef(pd_, td))
    return out


def pcc_scores(preds: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor) -> dict[str, float]:
    """``{emotion: PCC}`` in the official order."""
    return dict(zip(EMOTIONS, (float(v) for v in pearson_per_dimension(preds, targets)), strict=True))


def mean_pcc(preds: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor) -> float:
    """The challenge score: the mean over the six dimensions of the per-dimension PCC."""
    return float(pearson_per_dimension(preds, targets).mean())
