"""``train()``: one run of an experiment config on a dataset root, into a run folder.

Run folder::

    RUN/config.yaml              the resolved config (what ran, seed included)
    RUN/run.json                 provenance: the data fingerprint, config name, seed, emimic version and model format
    RUN/checkpoints/best.ckpt    EMA weights of the epoch with the best validation mean PCC
    RUN/checkpoints/last.ckpt    state of the last finished epoch (resume point)
    RUN/history.csv              one row per epoch: train losses, val loss, val PCC per dimension
    RUN/metrics.json             validation metrics of the best checkpoint; written last, marks the run complete

Calling ``train`` again with the same config, seed and data resumes an interrupted run from
``last.ckpt`` (shuffling and every random draw are seeded per (seed, epoch), so the resumed run
ends with the same metrics as an uninterrupted one) and returns a finished one as stored. Anything
else is refused unless ``overwrite``, and so is a run whose model format a later change of emimic
affects (:mod:`emimic.models.formats`). A run that fails or is interrupted before its first epoch is
saved leaves nothing behind, so the corrected command starts afresh.

Distributed training (``train.devices`` x ``train.num_nodes`` > 1) runs the same ``train`` in every
process, launched by Lightning itself, by ``torchrun`` or by SLURM; the batches come from
:class:`~emimic.training.datamodule.EMIDataModule`. Only the process of global rank 0 decides about
and writes the run folder (config.yaml, run.json, history.csv, checkpoints, metrics.json) and evaluates
the saved weights after training; the others only read it (the folder must be on a filesystem every
process sees) and return the synced validation scores (see :class:`TrainResult`). A world larger than a
split is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from emimic.config import ExperimentConfig, config_to_yaml, load_config, with_overrides
from emimic.data import FeatureStore, VidmimicDataset, open_dataset, with_valid_split
from emimic.data.holdout import check_valid_size
from emimic.data.store import (
    VALID_FEATURES_WAY_OUT,
    featureless_valid_sentence,
    stale_modalities,
    untrainable_sentence,
)
from emimic.errors import ConfigError, DataError, EmimicWarning, IncompatibleRun, OutputConflict, explain_interrupt
from emimic.io import write_text
from emimic.labels import EMOTIONS
from emimic.models.emi import ModelSpec, resolve_spec, vad_branch
from emimic.models.ensemble import resolve_members
from emimic.outputs import exclusive_output, provisional_output, refuse_inside_dataset, warn_leftovers
from emimic.training.datamodule import EMIDataModule, check_world
from emimic.training.ema import EMA
from emimic.training.history import MONITOR, History
from emimic.training.inference import (
    BEST_CHECKPOINT,
    Evaluation,
    coverage,
    evaluate,
    load_run,
    lost_weights,
    read_checkpoint,
    torch_threads,
)
from emimic.training.module import EMIModule, pcc_column
from emimic.training.provenance import (
    CONFIG_FILE,
    RECORD_FILE,
    TRAINING_SPLITS,
    RunRecord,
    check_model_format,
    data_fingerprint,
    describe,
    differences,
    held_out_record,
    labelled_splits,
    metrics_record,
    read_run_record,
)
from emimic.training.weights import sample_weights

METRICS_FILE = "metrics.json"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"

# Lightning's advice on worker counts and logging does not apply to in-memory pooled batches.
_QUIET = (r".*does not have many workers.*", r".*LightningModule.*has parameters that were not used.*",
          r".*The number of training batches.*", r".*treespec.*", r".*exists and is not empty.*",
          r".*overridden `transfer_batch_to_device`.*")


@dataclass
class TrainResult:
    """What ``train`` returns, in every process. Under DDP only rank 0 evaluates the saved weights on the valid
    split (``valid.clips``: its per-clip predictions) and writes ``metrics.json``; a process of rank > 0 gets the
    same run, epochs and best epoch, and as ``valid`` that epoch's scores as the validation metric synced over
    every process computed them: equal to rank 0's to float rounding (1e-6), with ``valid.clips`` None."""

    run: Path
    valid: Evaluation
    best_epoch: int
    epochs: int
    seconds: float
    stored: bool = False  # True: the folder held this finished run already; nothing was trained
    rank: int = 0  # global rank of this process under DDP: only rank 0 wrote the run folder
    held_out_of: int | None = None  # the clips of train_split.csv the validation clips were held out of, if they were
    held_out_by: str | None = None  # the group column whose whole groups were held out of train to validate on

    def to_dict(self) -> dict:
        return {**self.valid.to_dict(), "best_epoch": self.best_epoch, "epochs": self.epochs,
                "seconds": round(self.seconds, 2)}


def _resolve_config(config: ExperimentConfig | str | Path | None, overrides: Mapping[str, object],
                    previous: RunRecord | None) -> ExperimentConfig:
    """``config`` (a preset name, file or object; default: the run folder's own, else the default preset) with
    ``overrides``."""
    if isinstance(config, ExperimentConfig):
        return with_overrides(config, overrides)
    if config is None and previous is not None:
        return with_overrides(previous.config, overrides)
    return load_config(config, overrides=overrides)


def _previous_run(run: Path, *, overwrite: bool) -> RunRecord | None:
    """The run already in the folder ``run``, if any (see :func:`_readable_run`); a non-empty folder that holds no
    run is refused."""
    if run.exists() and not run.is_dir():
        raise OutputConflict(f"{run} is a file, not a run folder; choose another --out.")
    previous = _readable_run(run, overwrite=overwrite)
    unreadable = overwrite and (run / RECORD_FILE).exists()  # what alone makes a run unreadable is its run.json
    if previous is None and not unreadable and run.exists() and any(run.iterdir()):
        raise OutputConflict(f"{run} exists, is not empty and holds no emimic run; choose another --out.")
    return previous


def _readable_run(run: Path, *, overwrite: bool) -> RunRecord | None:
    """The record of the run in ``run``; one this emimic cannot read (a newer model format, a damaged ``run.json``)
    is refused, unless ``overwrite``: then it counts as none, and the folder is replaced unread."""
    try:
        return read_run_record(run)
    except IncompatibleRun:
        if overwrite:
            return None
        raise


def _started(run: Path) -> bool:
    """A run counts once its first epoch is saved: before that, nothing in its folder is worth keeping."""
    return (run / LAST_CHECKPOINT).exists()


def check_reusable(run: Path) -> None:
    """Refuse a started run whose files a resume or a reuse would trip on: a damaged resume point (``last.ckpt``,
    named before Lightning reads it), or, once finished, a deleted best checkpoint (a score whose model is gone is
    no result) or a damaged ``metrics.json``. Each is an :class:`IncompatibleRun`, which ``overwrite`` resolves."""
    if not (run / METRICS_FILE).exists():
        read_checkpoint(run / LAST_CHECKPOINT)
        return
    if not (run / BEST_CHECKPOINT).exists():
        raise lost_weights(run)
    read_metrics(run)


def _check_same_run(run: Path, previous: RunRecord, requested: RunRecord) -> None:
    found = differences(previous, requested)
    if found:
        state = "finished" if (run / METRICS_FILE).exists() else "unfinished"
        raise OutputConflict(
            f"{run} holds a {state} run made with other settings or data ({describe(found)}); choose another"
            " --out, or pass --overwrite to replace it."
        )


def _kept(run: Path, max_epochs: int, *, replacing: bool) -> str:
    """What an interrupted run left, and how to go on: the message of Ctrl-C during ``train``. Called before
    :func:`~emimic.outputs.provisional_output` cleans up, so ``run`` still holds the new run's files; when
    ``replacing`` an old run and no epoch finished, the clean-up puts the old run back."""
    if not _started(run):
        if replacing:
            return (f"no epoch had finished, so nothing of this run was kept and the run that was in {run} is back in"
                    " place; run the same command to start again.")
        return f"no epoch had finished, so nothing of this run was kept in {run}; run the same command to start again."
    epochs = int(torch.load(run / LAST_CHECKPOINT, map_location="cpu", weights_only=True)["epoch"]) + 1
    return (f"kept {run} after epoch {epochs}/{max_epochs} (resume point {run / LAST_CHECKPOINT}); run the same"
            " command to resume.")


def _fit(trainer: pl.Trainer, module: EMIModule, data: EMIDataModule, resume: Path | None) -> None:
    """``trainer.fit``, where Ctrl-C stays a KeyboardInterrupt: Lightning turns it into ``sys.exit(1)`` (after
    restoring the process's signal handlers), and a SIGTERM (a cluster's preemption) into ``SystemExit`` with
    status 0, which would pass for success; both stop after saving nothing half-made, so both resume alike."""
    try:
        trainer.fit(module, datamodule=data, ckpt_path=resume)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


def _callbacks(cfg: ExperimentConfig, run: Path, history: History) -> list[Callback]:
    callbacks: list[Callback] = []
    selecting = cfg.train.selection == "best"
    if cfg.train.ema.enabled:
        ema = cfg.train.ema
        callbacks.append(EMA(ema.decay, warmup=ema.warmup, warmup_steps=ema.warmup_steps))
    callbacks += [
        history,
        # Both are saved at the end of each train epoch, after History recorded it, so a resume point holds
        # the row. The resume point is a checkpoint of its own: Lightning's save_last only saves when the
        # monitored metric improved, which would make a resumed run repeat every epoch since the best one.
        ModelCheckpoint(dirpath=run / BEST_CHECKPOINT.parent, filename=BEST_CHECKPOINT.stem,
                        monitor=MONITOR if selecting else None, mode="max", save_on_train_epoch_end=True,
                        auto_insert_metric_name=False, enable_version_counter=False),
        ModelCheckpoint(dirpath=run / LAST_CHECKPOINT.parent, filename=LAST_CHECKPOINT.stem,
                        save_on_train_epoch_end=True, enable_version_counter=False),
    ]
    if selecting:
        callbacks.append(EarlyStopping(monitor=MONITOR, mode="max", patience=cfg.train.patience))
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
    overwrite: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train ``config`` (default: the ``default`` preset) on ``data`` into the run folder ``out``.

    If ``out`` holds the same run (same config, seed and data), an unfinished one resumes and a finished one
    is returned as stored (``result.stored``); a run made with anything else is refused unless ``overwrite``,
    which replaces it once the new run has saved its first epoch. A corpus without a valid split needs
    ``valid_fraction`` (see :mod:`emimic.data.holdout`).

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
    primary = launched_as_rank_zero()
    with contextlib.ExitStack() as held:
        started = time.perf_counter()
        opened = data if isinstance(data, VidmimicDataset) else open_dataset(data)  # reads the layout, packs nothing
        refuse_inside_dataset(run, opened.root)
        if primary:  # one train at a time per run folder, held before the folder is read: what it holds decides
            held.enter_context(exclusive_output(run, command="train"))
            warn_leftovers(run)
        previous = _previous_run(run, overwrite=overwrite) if primary else _readable_run(run, overwrite=overwrite)
        resume = previous is not None and _started(run) and not overwrite
        if previous is not None and resume:  # refused before the data is packed: packing a corpus may take minutes
            # every process refuses alike (the files decide), so none waits for a rank that stopped
            check_model_format(run, previous.model_format, previous.config)
            check_reusable(run)
        cfg = _resolve_config(config, overrides, previous)
        ds = with_valid_split(opened, cfg.train.valid_fraction)
        _check_split_sizes(ds)
        if not primary:
            _check_packed(ds)
        store = ds.store(progress=progress, needed=modalities_read(cfg))
        record, spec, labelled = requested_run(ds, cfg)
        cfg = record.config
        if primary:
            for modality in untrainable_modalities(store, labelled["train"][0]):
                warnings.warn(_left_out_sentence(modality, len(labelled["train"][0]), cfg, store, spec),
                              EmimicWarning, stacklevel=2)
        if cfg.train.selection == "best":  # "last" selects nothing: a refit may score clips it trained on
            ds.check_disjoint("train", "valid")
        if previous is not None and resume:
            if primary:
                _check_same_run(run, previous, record)
            if (run / METRICS_FILE).exists():  # every process returns it; the ones of rank > 0 say so
                return dataclasses.replace(_stored_result(run), rank=0 if primary else max(rank_zero_only.rank, 1))
        history = History(run / "history.csv", verbose=progress, raw_weights=cfg.train.ema.enabled)
        trainer = _trainer(cfg, run, [*_callbacks(cfg, run, history), *callbacks], progress=progress)
        check_world(labelled, trainer.world_size)

        # Everything a start needs was checked: only now is the run folder written (by rank 0 alone).
        replace = not resume and (previous is not None or (overwrite and run.is_dir() and any(run.iterdir())))
        writing = (provisional_output(run, replace=replace, started=lambda: _started(run), kind="run") if primary
                   else contextlib.nullcontext())
        with writing, explain_interrupt(lambda: _kept(run, cfg.train.max_epochs, replacing=replace)):
            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            module = EMIModule(config=cfg.model_dump(mode="json"), spec=spec.to_dict(),
                               data={"root": str(ds.root), "identity": store.identity,
                                     "recipes": {m: store.recipe(m) for m in spec.inputs}})
            datamodule = EMIDataModule(cfg, store, spec, module.net, labelled,
                                       sample_weights(cfg.loss, ds.splits["train"], ds.meta()))
            datamodule.set_statistics(module.net)
            if primary and not resume:
                write_text(run / CONFIG_FILE, config_to_yaml(cfg))
                write_text(run / RECORD_FILE, record.to_json())
            with warnings.catch_warnings(), torch_threads(cfg.train.threads):
                for pattern in _QUIET:
                    warnings.filterwarnings("ignore", message=pattern)
                _fit(trainer, module, datamodule, run / LAST_CHECKPOINT if resume else None)
            best_epoch = _best_epoch(cfg, history.rows)
            # rank 0 alone scores the saved weights (the others would repeat its work and might read a checkpoint
            # it is still writing); the others take the synced metric's scores of that epoch: no collective here
            valid = (evaluate(load_run(run), ds, split="valid") if trainer.is_global_zero else
                     _epoch_scores(history.rows, best_epoch, labelled["valid"][0], store, spec.modalities))
        result = TrainResult(run, valid, best_epoch, len(history.rows), time.perf_counter() - started,
                             rank=trainer.global_rank, held_out_of=_held_out_of(ds.held_out_fraction, ds.split_sizes()),
                             held_out_by=ds.held_out_by)
        if trainer.is_global_zero:
            source = None if isinstance(config, ExperimentConfig) else config
            write_text(run / METRICS_FILE, json.dumps(metrics_record(result, cfg, source, ds, record.data), indent=2))
        return result


def _check_split_sizes(ds: VidmimicDataset) -> None:
    """Refuse an empty train or valid split, or a valid split too small for a PCC, before the store is packed
    (minutes on a large corpus). Whatever ``train.selection``: a ``last`` run is scored on its valid split when it
    ends, so a 1-clip split would be refused only after the whole training; the cv refit, which trains on
    train+valid, picks a valid split of enough clips itself."""
    for name in TRAINING_SPLITS:
        if name in ds.splits:
            ds.clips(name)
    check_valid_size(ds.splits["valid"], root=ds.root, fraction=ds.held_out_fraction, where=ds.where)


# The settings modalities_read reads: a search space that varies one may make a trial read other modalities.
MODALITY_SETTINGS = ("model.modalities", "model.vad.enabled", "model.vad.observed")


def modalities_read(cfg: ExperimentConfig) -> set[str] | None:
    """The modalities a train of ``cfg`` may read: its branches and the observed VAD prior (``None``: every modality
    found, as ``model.modalities`` unset builds a branch of each)."""
    if cfg.model.modalities is None:
        return None
    vad = cfg.model.vad
    return {*cfg.model.modalities, *([vad.observed] if vad.enabled and vad.observed else [])}


def modalities_read_by_any(configs: Iterable[ExperimentConfig]) -> set[str] | None:
    """The modalities a train of any of ``configs`` may read (``None``: every modality found, when one of them reads
    each): what a command of many runs (``ablate``, ``sweep``) needs packed, so that an extract of any other modality
    does not stop it (see :meth:`~emimic.data.VidmimicDataset.store`)."""
    read = [modalities_read(cfg) for cfg in configs]
    return None if any(names is None for names in read) else set().union(*read)


def requested_run(ds: VidmimicDataset, cfg: ExperimentConfig
                  ) -> tuple[RunRecord, ModelSpec, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The run ``train`` makes of ``cfg`` on ``ds`` (as training sees it, its store packed): its record (the config
    resolved for the data, and the data's fingerprint), its model spec and the labelled splits it trains on."""
    store = ds.store(progress=False)
    labelled = labelled_splits(ds)
    cfg = resolve_members(cfg, len(labelled["train"][0]))
    untrainable = check_trainable(cfg, store, labelled["train"][0], where=ds.where)
    spec = trainable_spec(cfg, store, untrainable)
    check_selectable(cfg, store, labelled["valid"][0], untrainable=untrainable, where=ds.where,
                     way_out=valid_way_out(ds.held_out_fraction))
    fingerprint = dataclasses.replace(data_fingerprint(store, spec.inputs, labelled), held_out=held_out_record(ds))
    return RunRecord(cfg, fingerprint, str(ds.root)), spec, labelled


# What a user can do about a valid split without the modalities the model predicts from, by where it comes from.
HELD_OUT_WAY_OUT = ("hold out another share of train with --valid-fraction, or train a model reading a modality"
                    " they have")
FOLDS_WAY_OUT = ("draw the folds with another --fold-seed, use fewer --folds, or train a model reading a modality"
                 " every fold has")


def valid_way_out(held_out_fraction: float | None) -> str:
    """What a user can do about a valid split without features: it is a file, or (``held_out_fraction``) a share held
    out of train."""
    return VALID_FEATURES_WAY_OUT if held_out_fraction is None else HELD_OUT_WAY_OUT


def check_valid_features(store: FeatureStore, modalities: Sequence[str], valid_ids: np.ndarray, *,
                         where: str = "", way_out: str = VALID_FEATURES_WAY_OUT) -> None:
    """Refuse a valid split none of whose clips has any of the ``modalities`` the model predicts from (its branches:
    the observed VAD modality feeds only the loss): every validation score would be that of one prediction for all
    clips, and the best epoch a draw. ``way_out``: what the user can do in the command that refuses it."""
    if not np.any([store.present(modality, valid_ids) for modality in modalities]):
        read = f"any of the modalities the model reads ({', '.join(modalities)})"
        raise DataError(featureless_valid_sentence(len(valid_ids), read, where=where, way_out=way_out))


def check_selectable(cfg: ExperimentConfig, store: FeatureStore, valid_ids: np.ndarray, *,
                     untrainable: Collection[str], where: str = "", way_out: str = VALID_FEATURES_WAY_OUT) -> None:
    """Refuse, before any training, a run of ``cfg`` on training clips without the ``untrainable`` modalities (see
    :func:`untrainable_modalities`) that would select its best epoch on ``valid_ids`` none of which has a modality its
    model predicts from (see :func:`check_valid_features`). ``untrainable`` is keyword-only: a call that passes
    training ids before ``valid_ids`` (its former form) fails instead of checking every branch."""
    if cfg.train.selection == "best":  # "last" selects nothing
        spec = trainable_spec(cfg, store, untrainable)
        check_valid_features(store, spec.modalities, valid_ids, where=where, way_out=way_out)


def trainable_spec(cfg: ExperimentConfig, store: FeatureStore, untrainable: Collection[str]) -> ModelSpec:
    """The model spec of ``cfg`` on the modalities of ``store`` but the ``untrainable`` ones (no training clip has
    them: the model leaves them out)."""
    trainable = [m for m in store.modalities if m not in untrainable]
    return resolve_spec(cfg.model, {m: store.dim(m) for m in trainable},
                        {m: store.feature_names(m) for m in trainable})


# How to fix a setting that names a modality no training clip has.
_UNTRAINABLE_WAY_OUT = {"model.modalities": "remove it from model.modalities",
                        "model.vad.modality": "set model.vad.modality to another branch"}


def untrainable_settings(cfg: ExperimentConfig, untrainable: Collection[str]) -> dict[str, str]:
    """``{setting: modality}`` for each setting of ``cfg`` that names one of the ``untrainable`` modalities (its
    branch could never learn: see :func:`untrainable_modalities`)."""
    named = {"model.modalities": next((m for m in cfg.model.modalities or [] if m in untrainable), None),
             "model.vad.modality": cfg.model.vad.modality if cfg.model.vad.enabled else None}
    return {setting: modality for setting, modality in named.items() if modality in untrainable}


def check_trainable(cfg: ExperimentConfig, store: FeatureStore, train_ids: np.ndarray, *, where: str = "") -> list[str]:
    """The modalities of ``store`` none of the training clips ``train_ids`` has; a setting of ``cfg`` that names one
    is refused (``where``: what trains on these clips, e.g. a CV fold, to begin the sentence with)."""
    untrainable = untrainable_modalities(store, train_ids)
    named = untrainable_settings(cfg, untrainable)
    if named:
        setting, modality = next(iter(named.items()))
        way_out = f"{_UNTRAINABLE_WAY_OUT[setting]}, or add its features for training clips"
        raise ConfigError(f"{where}{setting}: {untrainable_sentence(modality, len(train_ids), way_out=way_out)}")
    return untrainable


def _left_out_sentence(modality: str, train_clips: int, cfg: ExperimentConfig, store: FeatureStore,
                       spec: ModelSpec) -> str:
    """What train says of a ``modality`` it leaves out: no training clip has it; and, when the VAD prior of the
    model (the paper's) was to be on its branch, where the prior is now, as nothing else would tell."""
    sentence = untrainable_sentence(modality, train_clips)
    if vad_branch(cfg.model, cfg.model.modalities or store.modalities) != modality:
        return sentence
    now = f"is on {spec.vad_modality!r} instead" if spec.vad_modality else "is off"
    return f"{sentence[:-1]}; the VAD prior (model.vad), which it carried, {now}."


def untrainable_modalities(store: FeatureStore, train_ids: np.ndarray) -> list[str]:
    """The modalities of ``store`` that none of the training clips ``train_ids`` has (see
    :func:`~emimic.data.store.untrainable_sentence`)."""
    return [m for m in store.modalities if not store.present(m, train_ids).any()]


def run_differences(run: str | Path, ds: VidmimicDataset, cfg: ExperimentConfig) -> list[str]:
    """What keeps the folder ``run`` from taking ``train(ds, run, config=cfg)`` without ``overwrite``, in the words of
    train's refusal: how the run it holds differs from that one, or why this emimic cannot use it (a ``run.json`` it
    cannot read, a model format a later change affects, files a resume or reuse would trip on: see
    :func:`check_reusable`); ``overwrite`` resolves each. Empty when it holds the same
    run, or one that never saved an epoch (train resumes it, or starts it afresh). A folder that holds no run at all
    is refused as train refuses it (:class:`OutputConflict`), which ``overwrite`` does not change."""
    run = Path(run)
    try:
        previous = _previous_run(run, overwrite=False)
        if previous is None or not _started(run):
            return []
        check_model_format(run, previous.model_format, previous.config)
        check_reusable(run)
    except IncompatibleRun as exc:
        return [exc.reason]
    record, _, _ = requested_run(with_valid_split(ds, cfg.train.valid_fraction), cfg)
    return differences(previous, record)


def _epoch_scores(rows: Sequence[Mapping[str, float]], epoch: int, ids: np.ndarray, store: FeatureStore,
                  modalities: Sequence[str]) -> Evaluation:
    """The validation result of ``epoch`` as its ``history.csv`` row holds it: the scores of the metric synced
    over every process, which rank 0's evaluation of that epoch's weights matches to float rounding (the
    valid clips ``ids``; no per-clip predictions)."""
    row = next(row for row in rows if row["epoch"] == epoch)
    pcc = {emotion: row[pcc_column(emotion)] for emotion in EMOTIONS}
    return Evaluation("valid", len(ids), row[MONITOR], pcc, coverage(store, list(modalities), ids))


def launched_as_rank_zero() -> bool:
    """Whether this process is the one of global rank 0, as its launcher's environment says before any Trainer
    exists: ``RANK`` (torchrun), ``LOCAL_RANK`` (Lightning's own launcher), ``SLURM_PROCID`` (srun), and the
    machine's ``NODE_RANK`` / ``GROUP_RANK`` (Lightning's launcher on several machines, torchrun). A plain
    process is rank 0."""
    node = os.environ.get("NODE_RANK") or os.environ.get("GROUP_RANK") or "0"
    return rank_zero_only.rank == 0 and int(node) == 0


def _check_packed(ds: VidmimicDataset) -> None:
    """Processes other than rank 0 never pack: under torchrun or SLURM they all start at once, and two packs
    of one store would race (Lightning's own launcher starts them after rank 0 packed)."""
    if any(action != "unchanged" for action in stale_modalities(ds.layout, ds.store_dir).values()):
        raise DataError(f"{ds.root}: the feature store is not packed (or is stale); run `emimic pack {ds.root}`"
                        " once before launching training on several processes.")


def _best_epoch(cfg: ExperimentConfig, rows: Sequence[Mapping[str, float]]) -> int:
    if not rows:
        return 0
    if cfg.train.selection == "best":
        return int(max(rows, key=lambda r: r.get(MONITOR, -np.inf))["epoch"])
    return int(rows[-1]["epoch"])


def _trainer(cfg: ExperimentConfig, run: Path, callbacks: list[Callback], *, progress: bool) -> pl.Trainer:
    """The Trainer of ``cfg.train`` (where and how it runs); a setting this machine cannot honour is a ConfigError."""
    _quiet_lightning()
    where = cfg.train
    try:
        return pl.Trainer(
            max_epochs=where.max_epochs,
            accelerator=where.accelerator,
            devices=where.devices,
            num_nodes=where.num_nodes,
            strategy=where.strategy,
            precision=where.precision,
            use_distributed_sampler=False,  # EMIDataModule shares the clips out itself
            deterministic=True,
            callbacks=callbacks,
            logger=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=run,
        )
    except (MisconfigurationException, RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0].rstrip(".")
        raise ConfigError(
            f"cannot train with accelerator {where.accelerator!r}, devices {where.devices!r}, num_nodes"
            f" {where.num_nodes}, strategy {where.strategy!r}, precision {where.precision!r} here ({reason});"
            " choose other --accelerator / --devices / --strategy / --precision."
        ) from None


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def read_metrics(run: Path) -> dict:
    """The ``metrics.json`` of a finished run; one that is not a JSON object is refused by name."""
    path = run / METRICS_FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        reason = "" if isinstance(stored, dict) else f"it holds a JSON {type(stored).__name__}, not an object"
    except OSError as exc:  # its text names the path, which the sentence starts with
        reason = exc.strerror or type(exc).__name__
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc)
    if reason:
        raise IncompatibleRun(f"{path}: cannot be read as the metrics of a run ({reason})",
                              "restore the file emimic wrote, or train the run again with --overwrite")
    return stored


def _stored_result(run: Path) -> TrainResult:
    stored = read_metrics(run)
    valid = Evaluation(stored["split"], stored["n_clips"], stored["mean_pcc"], stored["pcc"],
                       stored.get("coverage", {}))
    data = stored.get("provenance", {}).get("data", {})
    held_out = data.get("held_out") or {}
    return TrainResult(run, valid, stored["best_epoch"], stored["epochs"], stored["seconds"], stored=True,
                       held_out_of=_held_out_of(held_out.get("fraction"), data.get("split_sizes", {})),
                       held_out_by=held_out.get("group_column"))


def _held_out_of(fraction: float | None, split_sizes: Mapping[str, int]) -> int | None:
    """The clips of train_split.csv a run's validation clips were held out of (``None``: it had a valid split)."""
    return None if fraction is None else split_sizes["train"] + split_sizes["valid"]
