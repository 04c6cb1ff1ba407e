import warnings

import numpy as np
import pandas as pd
import pytest

from emimic.labels import CONSTANT_STD, EMOTIONS, constant_emotions
from emimic.metrics import (
    bootstrap_pcc,
    confidence_interval,
    mean_pcc,
    pcc_scores,
    pearson_per_dimension,
    resample_counts,
)


def test_matches_numpy_corrcoef():
    rng = np.random.default_rng(0)
    y = rng.random((50, 6))
    p = y + rng.normal(scale=0.3, size=y.shape)
    expected = [np.corrcoef(p[:, d], y[:, d])[0, 1] for d in range(6)]
    np.testing.assert_allclose(pearson_per_dimension(p, y), expected, atol=1e-10)
    assert mean_pcc(p, y) == pytest.approx(np.mean(expected))


def test_constant_predictions_score_zero_not_nan():
    y = np.random.default_rng(1).random((20, 6))
    p = np.full_like(y, 0.5)
    scores = pearson_per_dimension(p, y)
    assert np.all(scores == 0.0)
    assert mean_pcc(p, np.full_like(y, 0.2)) == 0.0


def test_constant_labels_score_zero_whatever_the_predictions():
    rng = np.random.default_rng(4)
    y = rng.random((20, 6))
    y[:, 2] = 0.7  # nobody showed any Determination
    scores = pearson_per_dimension(rng.random((20, 6)), y)
    assert np.isfinite(scores).all() and scores[2] == 0.0


def test_non_finite_rows_are_left_out_per_dimension():
    y = np.random.default_rng(2).random((30, 6))
    p = y.copy()
    p[3, 0] = np.nan
    y[5, 1] = np.inf
    np.testing.assert_allclose(pearson_per_dimension(p, y), np.ones(6), atol=1e-12)


def test_scores_are_named_in_official_order():
    y = np.random.default_rng(3).random((10, 6))
    assert list(pcc_scores(y, y)) == list(EMOTIONS)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same"):
        pearson_per_dimension(np.zeros((3, 6)), np.zeros((4, 6)))


def test_bootstrap_rows_equal_the_pcc_of_each_resample():
    rng = np.random.default_rng(3)
    y = rng.random((40, 6))
    p = y + rng.normal(scale=0.5, size=y.shape)
    p[7, 2] = np.nan
    boot = bootstrap_pcc(p, y, samples=5, seed=11)
    for row, counts in zip(boot, resample_counts(40, samples=5, seed=11), strict=True):
        chosen = np.repeat(np.arange(40), counts.astype(int))
        np.testing.assert_allclose(row, pearson_per_dimension(p[chosen], y[chosen]), atol=1e-9)


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_more_clips():
    rng = np.random.default_rng(4)

    def width(n: int) -> float:
        y = rng.random((n, 6))
        p = y + rng.normal(scale=0.5, size=y.shape)
        low, high = confidence_interval(bootstrap_pcc(p, y, samples=400, seed=0))
        point = pearson_per_dimension(p, y)
        assert np.all(low <= point) and np.all(point <= high)
        return float(np.mean(high - low))

    assert width(1000) < 0.5 * width(100)


def test_bootstrap_of_constant_predictions_is_zero():
    y = np.random.default_rng(5).random((30, 6))
    assert np.all(bootstrap_pcc(np.full_like(y, 0.3), y, samples=20) == 0.0)


def test_read_only_arrays_are_scored_without_a_torch_warning() -> None:
    """Arrays read from a memory map or a pandas frame may be read-only; torch warns when it shares them."""
    rng = np.random.default_rng(0)
    preds, targets = rng.random((20, 6)), rng.random((20, 6))
    expected = pearson_per_dimension(preds, targets)
    preds.flags.writeable = targets.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(pearson_per_dimension(preds, targets), expected)


# Columns around the constant rule: their population standard deviation, in units of CONSTANT_STD.
BOUNDARY_SPREAD = {"Admiration": 0.9, "Amusement": 0.999, "Determination": 1.001, "Empathic Pain": 1.1,
                   "Excitement": 0.0, "Joy": 1e6}


def test_the_constant_columns_a_warning_names_are_exactly_those_the_metric_scores_zero() -> None:
    z = np.array([-1.0, 1.0, -1.0, 1.0])  # population std 1; its sample std (ddof 1) is 1.15
    labels = pd.DataFrame({e: 0.5 + spread * CONSTANT_STD * z for e, spread in BOUNDARY_SPREAD.items()})
    scores = pcc_scores(np.repeat(z[:, None], 6, axis=1), labels.to_numpy())  # predictions follow every column
    assert constant_emotions(labels) == [e for e in EMOTIONS if scores[e] == 0.0]
    assert constant_emotions(labels) == ["Admiration", "Amusement", "Excitement"]


@pytest.mark.parametrize("value", [0.49375024, 0.9999])
def test_one_prediction_with_float32_rounding_noise_scores_zero(value: float) -> None:
    """A model's one output for every clip (clips without features) varies by a few float32 steps from batch to
    batch: a column of that noise is constant, not a PCC of it with the labels."""
    rng = np.random.default_rng(3)
    one = np.full((40, 6), value, np.float32)
    next_step = np.nextafter(one, np.float32(2))
    preds = np.where(rng.random((40, 6)) < 0.5, next_step, one).astype(np.float64)
    targets = rng.random((40, 6))
    assert len(np.unique(preds[:, 0])) == 2  # one float32 step apart
    assert pearson_per_dimension(preds, targets).tolist() == [0.0] * 6
    assert not bootstrap_pcc(preds, targets, samples=20).any()


def test_bootstrap_judges_a_resample_constant_as_the_metric_does() -> None:
    z = np.random.default_rng(6).normal(size=(30, 1))
    z = (z - z.mean()) / z.std()
    targets = 0.5 + CONSTANT_STD * z * np.array([[0.8, 0.95, 1.0, 1.05, 1.2, 1.5]])
    preds = np.repeat(z, 6, axis=1)
    boot = bootstrap_pcc(preds, targets, samples=50, seed=2)
    for row, counts in zip(boot, resample_counts(30, samples=50, seed=2), strict=True):
        chosen = np.repeat(np.arange(30), counts.astype(int))
        np.testing.assert_allclose(row, pearson_per_dimension(preds[chosen], targets[chosen]), atol=1e-6)
    assert 0 < np.count_nonzero(boot) < boot.size  # resamples on both sides of the rule
