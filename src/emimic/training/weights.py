"""Clip weights for the loss: how much each training clip's label can be trusted.

Hume-Vidmimic2 labels are fractions ``k/N`` of ``N`` raters, and ``N`` varies between clips; a
label averaged over more raters is less noisy, so ``loss.sample_weights: sqrt_raters`` weights a
clip by ``sqrt(N)`` (what the ABAW10 winner did). ``N`` comes from the split CSV's ``raters``
column when it has one, else it is inferred: the smallest ``N`` (up to ``loss.max_raters``) for
which every one of the clip's six labels lies within :data:`RATER_TOLERANCE` of a multiple of
``1/N``. A clip whose labels are all 0 or 1 is therefore counted as one rater, and continuous
labels (no such ``N``) as ``max_raters``: both ends are limits of what labels alone can tell.

Example::

    infer_rater_counts(np.array([[0.2, 0.4, 0, 0, 1, 0.6], [0.5, 0, 0, 0, 0, 0]]), max_raters=20)
    # array([5, 2])
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emimic.config import LossConfig
from emimic.labels import EMOTIONS, RATERS_COLUMN

# Largest distance, in label units, between a label and k/N that still counts as k/N: split CSVs
# written with 6 decimals are off by 5e-7, and a chance fit of continuous labels stays rare.
RATER_TOLERANCE = 1e-4


def infer_rater_counts(labels: np.ndarray, *, max_raters: int, tolerance: float = RATER_TOLERANCE) -> np.ndarray:
    """``(C,)`` smallest rater count N <= ``max_raters`` making every label of a clip a multiple of 1/N."""
    counts = np.arange(1, max_raters + 1)
    scaled = np.asarray(labels, dtype=np.float64)[:, None, :] * counts[None, :, None]  # (C, N, D)
    fits = (np.abs(scaled - np.round(scaled)) <= tolerance * counts[None, :, None]).all(axis=2)
    return np.where(fits.any(axis=1), fits.argmax(axis=1) + 1, max_raters)


def sample_weights(cfg: LossConfig, labels: pd.DataFrame, meta: pd.DataFrame) -> np.ndarray | None:
    """``(C,)`` weights of the clips of ``labels`` (mean 1), or None when the config weights none.

    ``meta`` holds the split CSVs' extra columns by Filename (see :func:`emimic.labels.read_meta`)."""
    if cfg.sample_weights == "none":
        return None
    if RATERS_COLUMN in meta.columns:
        raters = meta[RATERS_COLUMN].reindex(labels.index).to_numpy(dtype=np.float64)
    else:
        raters = infer_rater_counts(labels[list(EMOTIONS)].to_numpy(), max_raters=cfg.max_raters).astype(np.float64)
    weights = np.sqrt(raters)
    return (weights / weights.mean()).astype(np.float32)
