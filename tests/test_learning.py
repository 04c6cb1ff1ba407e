"""Learning on data with signal: one run trained on a small simulated corpus (the ``trained_run``
fixture) and what must hold of it. Each test names the defect it catches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from emimic.config import load_config
from emimic.data import open_dataset
from emimic.training.history import MONITOR
from emimic.training.inference import BEST_CHECKPOINT, evaluate, load_run
from emimic.training.run import TrainResult

# An untrained model scores about 0 (within ±0.2 on 30 clips); the trained one is near 0.5.
LEARNED_PCC = 0.4


def validation_history(result: TrainResult) -> pd.DataFrame:
    return pd.read_csv(result.run / "history.csv")


def test_the_model_learns_the_simulated_signal(trained_run: TrainResult) -> None:
    assert trained_run.valid.n_clips == 30
    assert trained_run.valid.mean_pcc > LEARNED_PCC


def test_reported_best_epoch_is_the_argmax_of_the_validation_history(trained_run: TrainResult) -> None:
    history = validation_history(trained_run)
    best_epoch = int(history["epoch"][history[MONITOR].idxmax()])
    worst_epoch = int(history["epoch"][history[MONITOR].idxmin()])
    # the run only tests selection if the best epoch is neither the worst nor the last one
    assert best_epoch not in (worst_epoch, trained_run.epochs)
    assert trained_run.best_epoch == best_epoch
    assert json.loads((trained_run.run / "metrics.json").read_text())["best_epoch"] == best_epoch


def test_the_saved_run_scores_what_its_best_epoch_scored(trained_run: TrainResult, simulated_root: Path) -> None:
    """Selection keeps the highest validation PCC (not the lowest, not the last) and inference uses those weights."""
    best_score = validation_history(trained_run)[MONITOR].max()
    assert trained_run.valid.mean_pcc == pytest.approx(best_score, abs=1e-5)
    assert evaluate(trained_run.run, simulated_root).mean_pcc == pytest.approx(best_score, abs=1e-5)


def test_early_stopping_ends_the_run_after_patience_epochs_without_a_higher_pcc(trained_run: TrainResult) -> None:
    scores = validation_history(trained_run)[MONITOR].tolist()
    settings = load_config(trained_run.run / "config.yaml").train
    best, waited, expected_epochs = -np.inf, 0, settings.max_epochs
    for epoch, score in enumerate(scores, start=1):
        best, waited = (score, 0) if score > best else (best, waited + 1)
        if waited >= settings.patience:
            expected_epochs = epoch
            break
    assert trained_run.epochs == len(scores) == expected_epochs < settings.max_epochs


def test_ema_weights_differ_from_the_raw_ones_and_are_the_ones_inference_uses(trained_run: TrainResult) -> None:
    checkpoint = torch.load(trained_run.run / BEST_CHECKPOINT, map_location="cpu", weights_only=True)
    ema, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    weights = [key for key, value in ema.items() if key.startswith("net.") and value.is_floating_point()]
    assert all(not torch.equal(ema[key], raw[key]) for key in weights if key.endswith(".weight"))
    loaded = load_run(trained_run.run).model.state_dict()
    for key, value in loaded.items():
        assert torch.equal(value, ema[f"net.{key}"]), key


def test_normalisation_statistics_come_from_the_training_clips_only(trained_run: TrainResult,
                                                                    simulated_root: Path) -> None:
    ds = open_dataset(simulated_root)
    store = ds.store(progress=False)
    train_ids = ds.splits["train"].index.to_numpy()
    model = load_run(trained_run.run).model
    for modality, branch in model.branches.items():
        ids = train_ids[store.present(modality, train_ids)]
        pooled = store.pooled(modality, ids).astype(np.float64)
        frames = np.concatenate([store.frames(modality, int(i)) for i in ids]).astype(np.float64)
        # a column constant over the training clips (a clip-level modality's std) is divided by the others' median
        std = pooled.std(0)
        expected = {"pooled_mean": pooled.mean(0), "pooled_std": np.where(std == 0, np.median(std[std > 0]), std),
                    "frame_mean": frames.mean(0), "frame_std": frames.std(0)}
        for name, value in expected.items():
            np.testing.assert_allclose(getattr(branch, name).numpy(), value, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{modality} {name}")
