"""``cross_validate()``: k folds over train+valid, the out-of-fold score, an optional refit.

Every clip of train and valid lands in exactly one fold. When the split CSVs carry a group column
(the first of :data:`~emimic.labels.GROUP_COLUMNS` present: ``group``, ``speaker``, ``seed_video``),
the folds are grouped (scikit-learn's ``GroupKFold``), so a speaker's clips never sit on both sides;
otherwise they are plain ``KFold``. Both shuffle with ``fold_seed``. Each (fold, seed) model is one
``train`` run folder, trained on the other folds and validated (model selection) on its fold; its
predictions on that fold are its out-of-fold (OOF) predictions, averaged over the seeds. The OOF mean
PCC over all clips of train+valid is the CV estimate, with a 95 % bootstrap interval per dimension.

With ``refit``, one model per seed is trained on all of train+valid for the median of the folds'
best epochs (``train.selection: last``: there is no held-out clip to select on; its ``metrics.json``
scores the valid split, which it trained on, so it is no estimate). Added seeds may move that median:
a refit of the old count is then refused before any refit trains, and replaced with ``overwrite``.
``emimic predict --run CV`` averages every model of the folder (folds x seeds, and the refits).

CV folder::

    CV/cv.json                 what the folder was made with (folds, fold seed, group column, config, data fingerprint)
    CV/folds.csv               Filename, fold (1..K): the seeded fold assignment, written once
    CV/fold{k}-seed{s}/        a `train` run folder: trained on the other folds, validated on fold k
    CV/oof.csv                 per clip: fold, OOF prediction (mean over seeds) and label of each emotion
    CV/summary.json            OOF mean PCC, per-dimension PCC with 95 % CIs, per-fold scores, best epochs (written
                               once the fold models are done, and again with the refit)
    CV/refit-seed{s}/          with refit: a run on all of train+valid

Calling it again on the same folder resumes: finished runs are reused (``train``'s run-folder
logic), an interrupted one continues from its last epoch, and a folder made with other folds, fold
seed, config or data is refused unless ``overwrite``. Seeds may be added, never dropped: the folder's
models are what ``predict --run CV`` averages, so a rerun without a seed it holds would leave that
seed's models in the ensemble unasked. The seeds the folder holds models of are read from its run folders
(those that saved an epoch), not recorded, so a seed whose models never saved one binds nothing. Before any
model trains, every run folder of the plan is checked: one holding a model that ``train`` would refuse (an
unreadable ``run.json``, an outdated model format) stops the call at once, or with ``overwrite`` is replaced
alone. A call that fails before any model saved an epoch leaves no folder behind (and puts back the one it was
to replace).

Example::

    from emimic.training.crossval import cross_validate
    cv = cross_validate("data/sim", "runs/cv", folds=5, seeds=[0, 1], refit=True, jobs=2)
    cv.mean_pcc, cv.refit_epochs
"""

from __future__ import annotations

import copy
import json
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold

from emimic.config import ExperimentConfig, load_config, with_overrides
from emimic.data import VidmimicDataset, open_dataset
from emimic.data.groups import clip_groups, group_column
from emimic.data.holdout import MIN_PCC_CLIPS
from emimic.errors import ConfigError, DataError
from emimic.io import atomic_path, write_text
from emimic.labels import EMOTIONS, view_prefix
from emimic.metrics import pcc_intervals, pcc_scores
from emimic.models.ensemble import resolve_members
from emimic.outputs import check_folder_settings, warn_leftovers
from emimic.training.inference import evaluate
from emimic.training.jobs import (
    Backend,
    Runner,
    TrainJob,
    checked_run_folders,
    distinct_seeds,
    results_folder,
    train_job,
)
from emimic.training.provenance import config_name, corpus_fingerprint, describe
from emimic.training.run import (
    FOLDS_WAY_OUT,
    LAST_CHECKPOINT,
    TrainResult,
    check_selectable,
    check_trainable,
    modalities_read,
)

SETTINGS_FILE = "cv.json"
FOLDS_FILE = "folds.csv"
OOF_FILE = "oof.csv"
SUMMARY_FILE = "summary.json"
_MODEL_FOLDER = re.compile(r"(?:fold\d+|refit)-seed(\d+)")  # the run folders of a CV, by seed


@dataclass(frozen=True)
class FoldJob(TrainJob):
    """One model of the CV folder: trained on the clips of ``fold_ids["train"]``, validated on ``fold_ids["valid"]``."""

    fold: int  # 0: the refit on all of train+valid
    fold_ids: dict[str, list[int]]  # split name -> clip ids of this job's dataset

    @property
    def label(self) -> str:
        return f"{self.view} seed {self.seed}"

    @property
    def view(self) -> str:
        """What this job's view of the corpus is called in messages: ``fold 2``, or ``refit``."""
        return fold_name(self.fold) if self.fold else "refit"

    def dataset(self, ds: VidmimicDataset | None = None) -> VidmimicDataset:
        """The corpus with train and valid replaced by this job's clips."""
        return split_view(super().dataset(ds), self.fold_ids["train"], self.fold_ids["valid"], view=self.view)


@dataclass
class CVResult:
    out: Path
    folds: int
    seeds: list[int]
    group_column: str | None
    mean_pcc: float
    pcc: dict[str, float]
    pcc_ci95: dict[str, list[float]]
    fold_scores: dict[str, float]  # "fold{k}-seed{s}" -> validation mean PCC on fold k
    best_epochs: list[int]
    refit_epochs: int | None
    refit_runs: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"folds": self.folds, "seeds": self.seeds, "group_column": self.group_column,
                "oof_mean_pcc": self.mean_pcc, "oof_pcc": self.pcc, "oof_pcc_ci95": self.pcc_ci95,
                "fold_scores": self.fold_scores, "best_epochs": self.best_epochs, "refit_epochs": self.refit_epochs,
                "refit_runs": [p.name for p in self.refit_runs]}


def pooled_labels(ds: VidmimicDataset) -> pd.DataFrame:
    """The labels of every clip of train and valid (the clips CV folds); a clip in both is refused as ``train``
    refuses it (pooled, it would be two clips of one id, in two folds)."""
    names = [name for name in ("train", "valid") if name in ds.splits]
    if not names:
        raise DataError(f"{ds.root}: has neither train_split.csv nor valid_split.csv, so there are no labelled clips to"
                        f" fold; add them (run `emimic validate {ds.root}` to list what is there).")
    for name in names:
        if not ds.has_labels(name):
            raise DataError(f"{ds.root}: cross-validation needs labels for every clip of the {name!r} split.")
    if len(names) == 2:
        ds.check_disjoint(*names)
    return pd.concat([ds.split(name) for name in names]).sort_index()


def assign_folds(ids: np.ndarray, groups: np.ndarray | None, folds: int, seed: int) -> np.ndarray:
    """``(N,)`` fold (1..``folds``) of each clip, seeded; clips of one group share a fold."""
    units = len(np.unique(groups)) if groups is not None else len(ids)
    if units < folds:
        kind = "groups" if groups is not None else "clips"
        # fewer folds cannot help below 2 units: the clips of one group are never split
        remedy = ("use fewer folds" if units >= 2 else
                  "give the clips at least 2 groups, or remove the group column to fold them one by one")
        raise DataError(f"{folds} folds need at least {folds} {kind}, but train+valid has {units}; {remedy}.")
    splitter = (GroupKFold(folds, shuffle=True, random_state=seed) if groups is not None
                else KFold(folds, shuffle=True, random_state=seed))
    fold_of = np.zeros(len(ids), dtype=np.int64)
    for k, (_, held) in enumerate(splitter.split(ids, groups=groups), start=1):
        fold_of[held] = k
    _check_fold_sizes(fold_of, folds)
    return fold_of


def _check_fold_sizes(fold_of: np.ndarray, folds: int) -> None:
    """Refuse folds too small to validate on before any model trains: each fold model selects its best epoch by
    the PCC of its fold (grouped folds may be uneven)."""
    sizes = np.bincount(fold_of, minlength=folds + 1)[1:]
    if sizes.min() < MIN_PCC_CLIPS:
        raise DataError(f"{folds} folds leave {sizes.min()} clip(s) in fold {sizes.argmin() + 1}, but each fold model"
                        f" selects its best epoch by a PCC over its fold, which needs at least {MIN_PCC_CLIPS};"
                        " use fewer folds.")


def refit_epoch_count(best_epochs: Sequence[int]) -> int:
    """Epochs of the refit: the median of the fold models' best epochs (robust to one fold that stopped late)."""
    return max(1, round(statistics.median(best_epochs)))


def fold_table(out: Path, labels: pd.DataFrame, split_files: Mapping[str, Path], folds: int, seed: int) -> pd.Series:
    """The fold of every clip (index Filename): read from ``folds.csv``, or assigned and written there once, grouped
    by the group column of ``split_files`` (a layout's) if there is one."""
    path = out / FOLDS_FILE
    if path.exists():
        stored = pd.read_csv(path, index_col=0)["fold"]
        if not stored.index.equals(labels.index):
            raise DataError(f"{path} assigns other clips than train+valid of this dataset holds; the data changed"
                            f" since this CV folder was made: choose a new --out.")
        return stored
    groups = clip_groups(split_files, labels.index, clips="train+valid", files="both split CSVs")
    fold_of = assign_folds(labels.index.to_numpy(), None if groups is None else groups.to_numpy(), folds, seed)
    table = pd.Series(fold_of, index=labels.index, name="fold")
    with atomic_path(path) as tmp:
        table.to_csv(tmp)
    return table


def split_view(ds: VidmimicDataset, train_ids: Sequence[int], valid_ids: Sequence[int], *,
               view: str) -> VidmimicDataset:
    """``ds`` with train and valid made of the given clips of train+valid (test is kept); ``view`` (``fold 2``) is
    named with its splits in messages."""
    pooled = pooled_labels(ds)
    held = copy.copy(ds)  # shares the layout and the packed store; only the split table differs
    held.splits = {**ds.splits, "train": pooled.loc[list(train_ids)], "valid": pooled.loc[list(valid_ids)]}
    held.view = view
    return held


def fold_name(fold: int) -> str:
    """How messages name the view of fold ``fold`` (1-based): ``fold 2``."""
    return f"fold {fold}"


def fold_view(run: str | Path, ds: VidmimicDataset) -> VidmimicDataset:
    """The dataset as the run folder ``run`` saw it: a fold run of a CV folder validates on its fold (so
    ``emimic report CV`` scores each fold model on clips it never trained on), a refit trains on all of train+valid
    (and is scored in-sample); any other run sees ``ds``."""
    run = Path(run)
    match = re.fullmatch(r"(?:fold(\d+)|refit)-seed\d+", run.name)
    if match is None or not (run.parent / FOLDS_FILE).exists():
        return ds
    fold_of = pd.read_csv(run.parent / FOLDS_FILE, index_col=0)["fold"]
    if match.group(1) is None:
        ids = _refit_ids(ds, fold_of)
        return split_view(ds, ids["train"], ids["valid"], view="refit")
    k = int(match.group(1))
    return split_view(ds, fold_of.index[fold_of != k], fold_of.index[fold_of == k], view=fold_name(k))


def _train_all(jobs: Sequence[FoldJob], ds: VidmimicDataset, runner: Runner,
               report: Callable[[FoldJob, TrainResult], None] | None) -> dict[str, TrainResult]:
    results = runner.run(jobs, train_job, inline=lambda job: train_job(job, ds), label="cross-validation models",
                         report=report)
    return {job.run: result for job, result in zip(jobs, results, strict=True)}


def _plan(out: Path, ds: VidmimicDataset, cfg: ExperimentConfig, fold_of: pd.Series,
          seeds: Sequence[int]) -> list[FoldJob]:
    jobs = []
    for k in sorted(fold_of.unique()):
        ids = {"train": fold_of.index[fold_of != k].tolist(), "valid": fold_of.index[fold_of == k].tolist()}
        jobs += [FoldJob.at(ds, out / f"fold{k}-seed{s}", s, cfg, fold=int(k), fold_ids=ids) for s in seeds]
    return jobs


def _refit_jobs(out: Path, ds: VidmimicDataset, cfg: ExperimentConfig, fold_of: pd.Series, epochs: int,
                seeds: Sequence[int]) -> list[FoldJob]:
    """The refit of each seed on all of train+valid, for ``epochs``."""
    refit = with_overrides(cfg, {"train.max_epochs": epochs, "train.selection": "last"})
    ids = _refit_ids(ds, fold_of)
    return [FoldJob.at(ds, out / f"refit-seed{seed}", seed, refit, fold=0, fold_ids=ids) for seed in seeds]


def _refit_ids(ds: VidmimicDataset, fold_of: pd.Series) -> dict[str, list[int]]:
    """The clips of a refit: it trains on all of train+valid; its valid score is of clips it trained on, a sanity
    figure only: on the valid split, or on fold 1 where that split is absent or too small for the PCC train's final
    evaluation needs."""
    given = ds.splits.get("valid")
    valid = (given.index.tolist() if given is not None and len(given) >= MIN_PCC_CLIPS
             else fold_of.index[fold_of == 1].tolist())
    return {"train": fold_of.index.tolist(), "valid": valid}


def _model_refusal(job: FoldJob, found: list[str]) -> str:
    return (f"{job.run} holds a model that this CV cannot reuse ({describe(found)}); pass --overwrite to train it"
            " again (the models it can reuse are kept), or choose a new --out.")


def _refit_refusal(job: FoldJob, found: list[str]) -> str:
    """A refit folder may hold a refit of other epochs: the folds' median best epoch moves when seeds are added."""
    epochs = job.config.train.max_epochs
    moved = (f", and the folds now choose {epochs} epochs (their median best epoch moves when seeds are added)"
             if any(difference.startswith("train.max_epochs was ") for difference in found) else "")
    return (f"{job.run} holds a refit made otherwise ({describe(found)}){moved}; pass --overwrite to refit it again"
            " (the fold models are kept), or choose a new --out.")


def held_seeds(out: Path) -> list[int]:
    """The seeds of the models in the CV folder ``out`` that saved an epoch (its fold and refit runs): the ones
    ``predict --run`` averages in once they are finished."""
    started = (_MODEL_FOLDER.fullmatch(checkpoint.parents[1].name) for checkpoint in out.glob(f"*/{LAST_CHECKPOINT}"))
    return sorted({int(match.group(1)) for match in started if match})


def _check_seeds(out: Path, seeds: Sequence[int], *, overwrite: bool) -> bool:
    """Whether the CV folder ``out`` is to be replaced (``overwrite``) because it holds models of seeds not in
    ``seeds``, which ``predict --run`` would average in unasked; refused without ``overwrite``."""
    dropped = [seed for seed in held_seeds(out) if seed not in seeds]
    if dropped and not overwrite:
        kept = " ".join(map(str, sorted({*dropped, *seeds})))
        raise ConfigError(f"{out} holds the models of seed(s) {', '.join(map(str, dropped))} too, which `predict --run"
                          f" {out}` would average in, so seeds may be added but not dropped; rerun it with --seeds"
                          f" {kept}, pass --overwrite to replace it, or choose a new --out.")
    return bool(dropped)


def out_of_fold(ds: VidmimicDataset, jobs: Sequence[FoldJob], labels: pd.DataFrame,
                fold_of: pd.Series) -> pd.DataFrame:
    """Per clip: fold, OOF prediction (mean over the seeds' models of its fold) and label of each emotion."""
    preds = pd.DataFrame(0.0, index=labels.index, columns=list(EMOTIONS))
    counts = pd.Series(0, index=labels.index)
    for job in jobs:
        clips = evaluate(job.run, job.dataset(ds), split="valid").clips
        preds.loc[clips.index] += clips[[f"pred {e}" for e in EMOTIONS]].to_numpy()
        counts.loc[clips.index] += 1
    preds = preds.div(counts, axis=0)
    return pd.DataFrame({"fold": fold_of, **{f"pred {e}": preds[e] for e in EMOTIONS},
                         **{f"true {e}": labels[e] for e in EMOTIONS}})


def cross_validate(
    data: str | Path | VidmimicDataset,
    out: str | Path,
    *,
    folds: int = 5,
    seeds: Sequence[int] | None = None,
    config: ExperimentConfig | str | Path | None = None,
    max_epochs: int | None = None,
    overrides: Mapping[str, object] | None = None,
    refit: bool = False,
    jobs: int = 1,
    backend: Backend = "local",
    ray_address: str | None = None,
    fold_seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    report: Callable[[FoldJob, TrainResult], None] | None = None,
) -> CVResult:
    """Cross-validate ``config`` (default: the default preset) over train+valid of ``data`` into the CV folder ``out``,
    one model per fold and seed of ``seeds`` (default: the config's seed, after ``overrides``).

    ``jobs`` models train at once on local processes (``backend`` ``local``) or as Ray tasks (``ray``, on
    ``ray_address``, default a local Ray; see :mod:`emimic.training.jobs`). A folder made with other folds, fold
    seed, config or data, or one that holds models of a seed not in ``seeds`` (``predict --run`` would average them
    in), is refused unless ``overwrite``, which replaces it once a new model has saved an epoch; a model or refit
    folder that cannot be reused as it is (a refit of other epochs, an unreadable run) is refused too, or with
    ``overwrite`` replaced alone. ``seeds`` may add to the folder's. ``report(job, result)`` is called as each model
    finishes (the CLI prints one line per model)."""
    out = Path(out)
    warn_leftovers(out)
    if folds < 2:
        raise ConfigError(f"--folds {folds}: cross-validation needs at least 2 folds.")
    ds = data if isinstance(data, VidmimicDataset) else open_dataset(data)
    overrides = dict(overrides or {}) | ({"train.max_epochs": max_epochs} if max_epochs is not None else {})
    cfg = config if isinstance(config, ExperimentConfig) else load_config(config)
    # each fold model validates on its fold: a config's share held out of train (train.valid_fraction) does not apply
    cfg = with_overrides(cfg, {**overrides, "train.valid_fraction": None})
    seeds = distinct_seeds(seeds if seeds is not None else [cfg.seed])
    labels = pooled_labels(ds)
    # resolved once, for the clips a fold model trains on: every fold, seed and refit model has as many members
    cfg = resolve_members(cfg, len(labels) * (folds - 1) // folds)
    column = group_column(ds.layout.split_files)
    needed = modalities_read(cfg)
    store = ds.store(progress=progress, needed=needed)  # packed once here, before any worker opens it
    data = corpus_fingerprint(ds, store, out / SETTINGS_FILE, needed=needed)
    settings = {"folds": folds, "fold_seed": fold_seed, "group_column": column,
                "config": cfg.model_dump(mode="json", exclude={"seed"}), "data": data.recorded}
    runner = Runner(jobs, backend, ray_address, progress)  # a wrong --ray-address refuses before any write
    # seeds may be added, never dropped: the folder's models are what `predict --run` averages; which seeds it
    # holds models of is read from its run folders, not recorded, so a seed that never saved an epoch binds nothing
    replace = check_folder_settings(out, SETTINGS_FILE, settings, kind="CV", overwrite=overwrite)
    replace = replace or _check_seeds(out, seeds, overwrite=overwrite)
    settings["data"] = data.to_record(replaced=replace)
    with results_folder(out, replace=replace, kind="CV"):
        fold_of = fold_table(out, labels, ds.layout.split_files, folds, fold_seed)
        jobs = _plan(out, ds, cfg, fold_of, seeds)
        # a fold the config cannot train or select on would stop the command after other folds; checked before the
        # run folders, whose check of a fold's started run (an earlier emimic trained it) refuses it in a plain
        # valid split's words
        for job in jobs:
            train_ids, where = np.asarray(job.fold_ids["train"]), view_prefix(job.view)
            untrainable = check_trainable(cfg, store, train_ids, where=where)
            check_selectable(cfg, store, np.asarray(job.fold_ids["valid"]), untrainable=untrainable, where=where,
                             way_out=FOLDS_WAY_OUT)
        plan = checked_run_folders(jobs, ds, overwrite=overwrite, refusal=_model_refusal)
        write_text(out / SETTINGS_FILE, json.dumps(settings, indent=2))  # once the folds could be assigned
        results = _train_all(plan, ds, runner, report)
    oof = out_of_fold(ds, plan, labels, fold_of)
    with atomic_path(out / OOF_FILE) as tmp:
        oof.to_csv(tmp, float_format="%.6f")
    preds, truth = (oof[[f"{kind} {e}" for e in EMOTIONS]].to_numpy(copy=True) for kind in ("pred", "true"))
    scores = pcc_scores(preds, truth)
    best_epochs = [results[job.run].best_epoch for job in plan]
    result = CVResult(out, folds, seeds, column, float(np.mean(list(scores.values()))), scores,
                      pcc_intervals(preds, truth),
                      {Path(job.run).name: results[job.run].valid.mean_pcc for job in plan}, best_epochs, None)
    # what the figures are of (the full config: cv.json, and each model's config.yaml)
    provenance = {"config": config_name(None if isinstance(config, ExperimentConfig) else config, cfg),
                  "fold_seed": fold_seed,
                  "data": {"root": str(Path(ds.root).resolve()), "fingerprint": settings["data"]}}
    # written before the refit too, so that a refit refused or failing leaves it in step with oof.csv
    write_text(out / SUMMARY_FILE, json.dumps(result.to_dict() | {"provenance": provenance}, indent=2))
    if refit:
        result.refit_epochs = refit_epoch_count(best_epochs)
        refit_plan = checked_run_folders(_refit_jobs(out, ds, cfg, fold_of, result.refit_epochs, seeds), ds,
                                         overwrite=overwrite, refusal=_refit_refusal)
        _train_all(refit_plan, ds, runner, report)
        result.refit_runs = [out / Path(job.run).name for job in refit_plan]
        write_text(out / SUMMARY_FILE, json.dumps(result.to_dict() | {"provenance": provenance}, indent=2))
    return result
