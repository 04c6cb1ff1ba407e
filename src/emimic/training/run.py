"""``train()``: one run of an experiment config on a dataset root, into a run folder.

Run folder::

    RUN/config.yaml              the resolved config (what ran)
    RUN/checkpoints/best.ckpt    EMA weights of the epoch with the best validation mean PCC
    RUN/checkpoints/last.ckpt    state of the last finished epoch (resume point)
    RUN/history.csv              one row per epoch: train losses, val loss, val PCC per dimension
    RUN/metrics.json             validation metrics of the best checkpoint; written last, marks the run complete

Calling ``train`` again on an interrupted run folder resumes from ``last.ckpt``. Shuffling and
every random draw are seeded per (seed, epoch), so the resumed run ends with the same metrics
as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from emimic.config import ExperimentConfig, config_to_yaml, load_config, with_overrides
from emimic.data import VidmimicDataset, feature_statistics, open_dataset, with_valid_split
from emimic.data.dataset import EpochShuffle  # noqa: F401  (its home was here; importers keep working)
from emimic.errors import ConfigError, DataError
from emimic.io import write_text
from emimic.labels import EMOTIONS
from emimic.models.emi import resolve_spec
from emimic.provenance import metrics_record
from emimic.training.ema import EMA
from emimic.training.history import MONITOR, History
from emimic.training.inference import (
    BEST_CHECKPOINT,
    Evaluation,
    clip_loader,
    eval_batch_size,
    evaluate,
    load_run,
    torch_threads,
)
from emimic.training.module import EMIModule

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"

# Lightning's advice on worker counts and logging does not apply to in-memory pooled batches.
_QUIET = (r".*does not have many workers.*", r".*LightningModule.*has parameters that were not used.*",
          r".*The number of training batches.*", r".*treespec.*", r".*exists and is not empty.*")


@dataclass
class TrainResult:
    run: Path
    valid: Evaluation
    best_epoch: int
    epochs: int
    seconds: float

    def to_dict(self) -> dict:
        return {**self.valid.to_dict(), "best_epoch": self.best_epoch, "epochs": self.epochs,
                "seconds": round(self.seconds, 2)}


def _resolve_config(run: Path, config: ExperimentConfig | str | Path | None,
                    overrides: Mapping[str, object]) -> ExperimentConfig:
    """The config to run: ``config`` (a preset name, file or object; default: the run's own, else paper)
    with ``overrides``; it must equal what an existing run folder was started with."""
    stored_path = run / CONFIG_FILE
    if isinstance(config, ExperimentConfig):
        requested = with_overrides(config, overrides)
    else:
        source = config if config is not None else (stored_path if stored_path.exists() else None)
        requested = load_config(source, overrides=overrides)
    if stored_path.exists() and load_config(stored_path) != requested:
        raise ConfigError(
            f"{run} was started with a different configuration (see {stored_path}); resume it with the same"
            " options, or choose a new --out."
        )
    return requested


def _labelled(ds: VidmimicDataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in ds.splits or not ds.has_labels(split):
        raise DataError(f"{ds.root}: training needs a labelled {split!r} split.")
    labels = ds.splits[split]
    return labels.index.to_numpy(dtype=np.int64), labels[list(EMOTIONS)].to_numpy(dtype=np.float32)


def _callbacks(cfg: ExperimentConfig, run: Path, history: History) -> list[Callback]:
    callbacks: list[Callback] = []
    if cfg.train.ema.enabled:
        callbacks.append(EMA(cfg.train.ema.decay, warmup=cfg.train.ema.warmup))
    callbacks += [
        history,
        # Both are saved at the end of each train epoch, after History recorded it, so a resume point holds
        # the row. The resume point is a checkpoint of its own: Lightning's save_last only saves when the
        # monitored metric improved, which would make a resumed run repeat every epoch since the best one.
        ModelCheckpoint(dirpath=run / BEST_CHECKPOINT.parent, filename=BEST_CHECKPOINT.stem, monitor=MONITOR,
                        mode="max", save_on_train_epoch_end=True, auto_insert_metric_name=False,
                        enable_version_counter=False),
        ModelCheckpoint(dirpath=run / LAST_CHECKPOINT.parent, filename=LAST_CHECKPOINT.stem,
                        save_on_train_epoch_end=True, enable_version_counter=False),
        EarlyStopping(monitor=MONITOR, mode="max", patience=cfg.train.patience),
    ]
    return callbacks


def train(
    data: str | Path | VidmimicDataset,
    out: str | Path,
    *,
    config: ExperimentConfig | str | Path | None = None,
    seed: int | None = None,
    max_epochs: int | None = None,
    valid_fraction: float | None = None,
    overrides: Mapping[str, object] | None = None,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train ``config`` (default: the paper preset) on ``data`` into the run folder ``out``.

    Resumes an interrupted run in ``out``; returns the stored result of a finished one. A corpus
    without a valid split needs ``valid_fraction`` (see :mod:`emimic.data.holdout`).

    Example::

        import emimic
        result = emimic.train("data/sim", "runs/paper", seed=0)
        result.valid.mean_pcc
    """
    run = Path(out)
    overrides = dict(overrides or {})
    if seed is not None:
        overrides["seed"] = seed
    if max_epochs is not None:
        overrides["train.max_epochs"] = max_epochs
    if valid_fraction is not None:
        overrides["train.valid_fraction"] = valid_fraction
    if run.exists() and any(run.iterdir()) and not (run / CONFIG_FILE).exists():
        raise ConfigError(f"{run} exists and is not an emimic run folder; choose a new --out.")
    cfg = _resolve_config(run, config, overrides)
    if (run / METRICS_FILE).exists():
        return _stored_result(run)

    started = time.perf_counter()
    ds = with_valid_split(data if isinstance(data, VidmimicDataset) else open_dataset(data),
                          cfg.train.valid_fraction)
    store = ds.store(progress=progress)
    train_ids, train_y = _labelled(ds, "train")
    valid_ids, valid_y = _labelled(ds, "valid")
    spec = resolve_spec(cfg.model, {m: store.dim(m) for m in store.modalities})
    write_text(run / CONFIG_FILE, config_to_yaml(cfg))

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module = EMIModule(config=cfg.model_dump(mode="json"), spec=spec.to_dict(),
                       data={"root": str(ds.root), "identity": store.identity})
    module.net.set_statistics(feature_statistics(store, train_ids, spec.inputs))
    batch = cfg.optim.batch_size
    train_loader = clip_loader(store, spec, module.net, train_ids, train_y, batch_size=batch,
                               max_frames=cfg.model.encoder.max_frames, seed=cfg.seed,
                               drop_last=len(train_ids) > batch, num_workers=cfg.train.num_workers)
    valid_loader = clip_loader(store, spec, module.net, valid_ids, valid_y,
                               batch_size=eval_batch_size(module.net, batch),
                               max_frames=cfg.model.encoder.max_frames, num_workers=cfg.train.num_workers)
    history = History(run / "history.csv", verbose=progress, raw_weights=cfg.train.ema.enabled)
    _quiet_lightning()
    trainer = pl.Trainer(
        max_epochs=cfg.train.max_epochs,
        accelerator=cfg.train.accelerator,
        devices=cfg.train.devices,
        deterministic=True,
        callbacks=[*_callbacks(cfg, run, history), *callbacks],
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=run,
    )
    last = run / LAST_CHECKPOINT
    with warnings.catch_warnings(), torch_threads(cfg.train.threads):
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        trainer.fit(module, train_loader, valid_loader, ckpt_path=last if last.exists() else None)
    if trainer.interrupted:
        raise KeyboardInterrupt

    rows = history.rows
    best_epoch = max(rows, key=lambda r: r.get(MONITOR, -np.inf))["epoch"] if rows else 0
    valid = evaluate(load_run(run), ds, split="valid")
    result = TrainResult(run, valid, int(best_epoch), len(rows), time.perf_counter() - started)
    source = None if isinstance(config, ExperimentConfig) else config
    write_text(run / METRICS_FILE, json.dumps(metrics_record(result, cfg, source, ds), indent=2))
    return result


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _stored_result(run: Path) -> TrainResult:
    stored = json.loads((run / METRICS_FILE).read_text(encoding="utf-8"))
    valid = Evaluation(stored["split"], stored["n_clips"], stored["mean_pcc"], stored["pcc"],
                       stored.get("coverage", {}))
    return TrainResult(run, valid, stored["best_epoch"], stored["epochs"], stored["seconds"])
