"""The EMI challenge metric: Pearson correlation per emotion over all clips of a split, and their mean.

NaN-safe: a clip whose prediction or label is not finite is left out of that dimension.
Constant-safe: a dimension whose predictions (or labels) are constant scores 0, not NaN, so a
degenerate model is reported as uninformative rather than breaking model selection.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional import pearson_corrcoef

from emimic.labels import EMOTIONS, constant_label_columns, is_constant_variance

# The bootstrap of every reported interval (metrics.json, evaluate, report, cv, ablate): the same resamples of the
# same clips everywhere, so intervals of two runs are paired.
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


def _float64(values: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A float64 tensor of ``values``; an array is copied, since one read from a memory map or a pandas frame may
    be read-only, which torch warns about when it shares the memory."""
    if isinstance(values, torch.Tensor):
        return values.to(torch.float64)
    return torch.from_numpy(np.array(values, dtype=np.float64))


def pearson_per_dimension(preds: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(D,)`` Pearson correlation of each column of ``(N, D)`` predictions with the targets."""
    p, t = _float64(preds).cpu(), _float64(targets).cpu()
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"predictions {tuple(p.shape)} and targets {tuple(t.shape)} must be the same (N, D)")
    out = np.zeros(p.shape[1])
    for d in range(p.shape[1]):
        keep = torch.isfinite(p[:, d]) & torch.isfinite(t[:, d])
        pd_, td = p[keep, d], t[keep, d]
        if len(pd_) < 2 or constant_label_columns(torch.stack([pd_, td], dim=1).numpy()).any():
            continue
        out[d] = float(pearson_corrcoef(pd_, td))
    return out


def pcc_scores(preds: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor) -> dict[str, float]:
    """``{emotion: PCC}`` in the official order."""
    return dict(zip(EMOTIONS, (float(v) for v in pearson_per_dimension(preds, targets)), strict=True))


def mean_pcc(preds: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor) -> float:
    """The challenge score: the mean over the six dimensions of the per-dimension PCC."""
    return float(pearson_per_dimension(preds, targets).mean())


def resample_counts(n: int, *, samples: int, seed: int) -> np.ndarray:
    """``(samples, n)`` how often each of ``n`` clips is drawn in each bootstrap resample of size ``n``."""
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=samples).astype(np.float64)


def bootstrap_pcc(preds: np.ndarray, targets: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES,
                  seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """``(samples, D)`` per-dimension PCC on ``samples`` resamples of the clips (drawn with replacement).

    Vectorised: each resample is a row of clip counts, so every moment is one matrix product. The
    resamples depend only on (seed, number of clips): two prediction sets scored against the same
    targets with the same seed are paired, which is what a difference between two runs needs.
    Non-finite values are left out per dimension and constant resamples score 0, as in
    :func:`pearson_per_dimension`.
    """
    p = np.asarray(preds, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"predictions {p.shape} and targets {t.shape} must be the same (N, D)")
    counts = resample_counts(len(p), samples=samples, seed=seed)
    keep = np.isfinite(p) & np.isfinite(t)
    # centred first, so sums of squares do not cancel (a constant column becomes exactly zero)
    p, t = (np.where(keep, x - np.mean(x, axis=0, where=keep), 0.0) for x in (p, t))
    weight = counts @ keep
    sum_p, sum_t = counts @ p, counts @ t
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = counts @ (p * t) - sum_p * sum_t / weight
        var_p = counts @ (p * p) - sum_p**2 / weight
        var_t = counts @ (t * t) - sum_t**2 / weight
        # var_p and var_t are sums of squares: per clip drawn, the population variance the labels' rule judges
        valid = (weight >= 2) & ~is_constant_variance(var_p / weight) & ~is_constant_variance(var_t / weight)
        return np.where(valid, cov / np.sqrt(np.where(valid, var_p * var_t, 1.0)), 0.0)


def paired_difference_interval(boot: np.ndarray, reference_boot: np.ndarray,
                               level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean-PCC difference of two prediction sets scored on the *same* bootstrap resamples
    of the same clips (``(samples, D)`` each, from :func:`bootstrap_pcc` with one seed): paired over clips,
    so what both get right or wrong alike cancels out. An interval that contains 0 is within noise."""
    low, high = confidence_interval(boot.mean(axis=1) - reference_boot.mean(axis=1), level)
    return float(low), float(high)


def confidence_interval(samples: np.ndarray, level: float = 0.95) -> np.ndarray:
    """``(2, ...)`` lower and upper percentile bounds of bootstrap ``samples`` along their first axis."""
    tail = 100.0 * (1.0 - level) / 2.0
    return np.percentile(samples, [tail, 100.0 - tail], axis=0)


# Past this many decimals a bound near zero is float rounding noise (a mean of PCCs that cancel leaves about 1e-16).
FLOAT_NOISE_DECIMALS = 9


def format_bound(value: float, spec: str = ".3f") -> str:
    """An interval bound or a change as ``format(value, spec)``, but float noise around zero (``-0.0``, or the
    ``-1e-16`` a mean of PCCs leaves) as zero: it prints as ``0.000`` (``+0.000`` with a sign), while ``-0.0004``
    keeps its minus sign (``-0.000``), since which side of zero a bound lies on decides whether a difference is
    noise. Not the ``z`` format option, which also drops the sign of a value that merely rounds to zero."""
    return format(round(value, FLOAT_NOISE_DECIMALS) + 0.0, spec)  # -0.0 + 0.0 is 0.0


def pcc_intervals(preds: np.ndarray, targets: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES,
                  seed: int = BOOTSTRAP_SEED) -> dict[str, list[float]]:
    """95 % bootstrap interval of each emotion's PCC and of the mean, ``{name: [low, high]}``."""
    boot = bootstrap_pcc(preds, targets, samples=samples, seed=seed)
    draws = np.column_stack([boot, boot.mean(axis=1)])
    low, high = confidence_interval(draws)
    names = [*EMOTIONS, "mean"]
    return {name: [round(float(lo), 4), round(float(hi), 4)] for name, lo, hi in zip(names, low, high, strict=True)}
