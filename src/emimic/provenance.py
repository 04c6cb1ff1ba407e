"""What produced a result: the block that ``metrics.json`` carries next to the scores.

A figure is only worth reporting with its provenance (DESIGN.md, trust rules): the config (name, where
it came from, every resolved setting), the seed, the data (path, the content fingerprint that ``run.json``
records, split sizes, modality coverage), the emimic version, the oracle ceiling when the corpus is
simulated, the bootstrap confidence interval of each score, the wall time and whether training stopped
early or hit its limit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emimic import __version__
from emimic.config import ExperimentConfig
from emimic.data.simulate import ORACLE_FILE
from emimic.labels import EMOTIONS
from emimic.metrics import bootstrap_pcc, confidence_interval

if TYPE_CHECKING:
    from emimic.data import VidmimicDataset
    from emimic.training.provenance import DataFingerprint
    from emimic.training.run import TrainResult

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


def load_oracle(root: str | Path) -> dict[str, Any] | None:
    """The simulator's oracle report of a dataset root, or None for a corpus that is not simulated."""
    path = Path(root) / ORACLE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _describe_source(config_source: str | Path | None, cfg: ExperimentConfig) -> str:
    if config_source is None:
        return f"preset {cfg.name}"
    path = Path(config_source)
    return str(path.resolve()) if path.exists() else f"preset {config_source}"


def pcc_intervals(preds: np.ndarray, targets: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES,
                  seed: int = BOOTSTRAP_SEED) -> dict[str, list[float]]:
    """95 % bootstrap interval of each emotion's PCC and of the mean, ``{name: [low, high]}``."""
    boot = bootstrap_pcc(preds, targets, samples=samples, seed=seed)
    draws = np.column_stack([boot, boot.mean(axis=1)])
    low, high = confidence_interval(draws)
    names = [*EMOTIONS, "mean"]
    return {name: [round(float(lo), 4), round(float(hi), 4)] for name, lo, hi in zip(names, low, high, strict=True)}


def run_provenance(
    cfg: ExperimentConfig,
    config_source: str | Path | None,
    data: VidmimicDataset,
    fingerprint: DataFingerprint,
    *,
    epochs: int,
    best_epoch: int,
    seconds: float,
) -> dict[str, Any]:
    """The ``provenance`` block of a run's ``metrics.json``; ``fingerprint`` is the one ``run.json`` records."""
    oracle = load_oracle(data.root)
    return {
        "emimic_version": __version__,
        "config": {
            # a run from my.yaml is called "my", not the preset its file may start from
            "name": Path(config_source).stem if config_source is not None else cfg.name,
            "source": _describe_source(config_source, cfg),
            "resolved": cfg.model_dump(mode="json"),
        },
        "seed": cfg.seed,
        "data": {
            "root": str(Path(data.root).resolve()),
            "fingerprint": fingerprint.digest,
            "modalities": fingerprint.modalities,
            "labels": fingerprint.labels,
            "split_sizes": {split: len(frame) for split, frame in data.splits.items()},
            "coverage": {split: {m: round(v, 4) for m, v in row.items()}
                         for split, row in data.coverage().to_dict(orient="index").items()},
        },
        "oracle": None if oracle is None else {"mean_pcc": oracle["oracle_mean_pcc"], "pcc": oracle["oracle_pcc"]},
        "training": {
            "epochs_run": epochs,
            "max_epochs": cfg.train.max_epochs,
            "best_epoch": best_epoch,
            "patience": cfg.train.patience,
            "stopped_early": epochs < cfg.train.max_epochs,
            "wall_seconds": round(seconds, 2),
        },
    }


def metrics_record(result: TrainResult, cfg: ExperimentConfig, config_source: str | Path | None,
                   data: VidmimicDataset, fingerprint: DataFingerprint) -> dict[str, Any]:
    """What ``RUN/metrics.json`` holds: the validation scores, their 95 % intervals and the provenance."""
    preds, targets = result.valid.arrays()
    return {
        **result.to_dict(),
        "pcc_ci95": pcc_intervals(preds, targets),
        "provenance": run_provenance(cfg, config_source, data, fingerprint, epochs=result.epochs,
                                     best_epoch=result.best_epoch, seconds=result.seconds),
    }
