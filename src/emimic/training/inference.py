"""Load a trained run and apply it: predictions for a split, the metric, a submission.

A run folder holds ``checkpoints/best.ckpt`` (EMA weights, loadable with
``torch.load(weights_only=True)``) whose hyper-parameters record the resolved config, the model
spec (branches, widths, VAD modalities) and the identity of the feature store it was trained on.
Applying it to data whose modality widths differ is refused with a clear error.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, Sampler, SequentialSampler

from emimic.config import ExperimentConfig
from emimic.data import ClipDataset, FeatureStore, VidmimicDataset, collate_clips, open_dataset
from emimic.data.dataset import EpochShuffle, LengthBuckets
from emimic.data.holdout import check_labels_vary, check_pcc_size
from emimic.errors import DataError, EmimicError, EmimicWarning, IncompatibleRun, OutputConflict
from emimic.io import atomic_path
from emimic.labels import EMOTIONS, constant_labels_sentence, read_split, shortlist
from emimic.metrics import pcc_scores
from emimic.models.emi import ModelSpec, build_model
from emimic.models.ensemble import AnyModel
from emimic.outputs import check_output_file
from emimic.submission import to_submission, write_submission
from emimic.training.provenance import RECORD_FILE, check_model_format, read_model_format

BEST_CHECKPOINT = Path("checkpoints") / "best.ckpt"
INFERENCE_BATCH = 4096


@dataclass
class TrainedModel:
    model: AnyModel
    config: ExperimentConfig
    spec: ModelSpec
    data: dict = field(default_factory=dict)  # feature-store identity and extraction recipes at training time


@dataclass
class Evaluation:
    split: str
    n_clips: int
    mean_pcc: float
    pcc: dict[str, float]
    coverage: dict[str, float] = field(default_factory=dict)  # share of clips with each modality
    # per clip (index Filename): the prediction and the label of each emotion, and which modalities it has
    clips: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"split": self.split, "n_clips": self.n_clips, "mean_pcc": self.mean_pcc, "pcc": self.pcc,
                "coverage": self.coverage}

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 6)`` predictions and labels, in the order of :attr:`clips`."""
        if self.clips is None:
            raise ValueError("this evaluation was loaded from metrics.json and holds no per-clip predictions")
        return (self.clips[[f"pred {e}" for e in EMOTIONS]].to_numpy(dtype=np.float64),
                self.clips[[f"true {e}" for e in EMOTIONS]].to_numpy(dtype=np.float64))

    def write_clips(self, path: str | Path) -> None:
        """Per-clip predictions, labels and modality presence as CSV (for error analysis)."""
        if self.clips is None:
            raise ValueError("this evaluation holds no per-clip predictions")
        with atomic_path(Path(path)) as tmp:
            self.clips.to_csv(tmp, float_format="%.6f")


def load_run(run: str | Path) -> TrainedModel:
    """Rebuild the model of the run folder ``run`` from ``checkpoints/best.ckpt`` (weights only: no code from the
    file is run): the one loader of trained runs (evaluate, predict, infer, report, ensembles, ``train``).

    A run of a newer model format than this emimic knows, or of an older one than a change that alters its
    predictions, is refused (see :mod:`emimic.models.formats`)."""
    run = Path(run)
    made_with = read_model_format(run)
    path = run / BEST_CHECKPOINT
    if not path.exists() and (run / RECORD_FILE).exists():
        raise OutputConflict(missing_weights_sentence(run))
    if not path.exists():
        raise EmimicError(f"{path}: no checkpoint here; train a run first (emimic train --data DIR --out RUN).")
    ckpt = read_checkpoint(path)
    config = ExperimentConfig.model_validate(ckpt["hyper_parameters"]["config"])
    check_model_format(run, made_with, config)  # before building: a change may also rename the model's weights
    return _rebuild(path, ckpt, config)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint of a run folder, weights only; a damaged one (truncated, overwritten) is refused by name."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch reports a damaged file from its zip reader, its unpickler or numpy alike
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:200]
        raise IncompatibleRun(f"{path}: cannot be read as a checkpoint ({reason})",
                              "restore the file emimic wrote, or train the run again with --overwrite") from None


def lost_weights(run: Path) -> IncompatibleRun:
    """What every command says of a finished run whose best checkpoint was deleted: only training again restores it."""
    return IncompatibleRun(f"{run / BEST_CHECKPOINT}: is missing, so the weights of this run are lost",
                           f"train it again with `emimic train --data DIR --out {run} --overwrite`")


def missing_weights_sentence(run: Path) -> str:
    """What to say of a started run without a best checkpoint: lost once it finished (its ``metrics.json`` is written
    last), else it has not saved an epoch yet."""
    from emimic.training.run import METRICS_FILE  # the import of run.py is deferred, as in member_runs

    if (run / METRICS_FILE).exists():
        return str(lost_weights(run))
    return (f"{run}: has not saved an epoch yet (it is still training, or stopped before its first epoch ended);"
            " wait for it, or resume it with the same `emimic train` command.")


def _rebuild(path: Path, ckpt: Mapping, config: ExperimentConfig) -> TrainedModel:
    """The model of the checkpoint ``ckpt`` (read from ``path``), trained with ``config``, in eval mode."""
    hp = ckpt["hyper_parameters"]
    spec = ModelSpec.from_dict(hp["spec"])
    model = build_model(spec, config.model)
    weights = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    _check_finite_weights(path, weights)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise EmimicError(
            f"{path}: holds a model this version of emimic builds differently (e.g. {(missing or unexpected)[0]!r});"
            " train the run again with this version."
        )
    model.eval()
    return TrainedModel(model, config, spec, dict(hp.get("data") or {}))


def _check_finite_weights(path: Path, weights: Mapping[str, torch.Tensor]) -> None:
    """Refuse the weights of a run whose training diverged: NaN weights predict NaN, which no score may hide."""
    bad = [name for name, value in weights.items() if value.is_floating_point() and not value.isfinite().all()]
    if bad:
        named = shortlist([repr(name) for name in bad], shown=1)
        raise EmimicError(f"{path}: holds NaN/Inf weights ({named}), so training diverged; train again with"
                          " --overwrite and a lower learning rate (optim.lr).")


def member_runs(path: str | Path) -> list[Path]:
    """A run folder itself, else the finished runs inside it (a CV or ablation folder)."""
    from emimic.training.run import METRICS_FILE  # written last by `train`: marks a finished run

    path = Path(path)
    if (path / BEST_CHECKPOINT).exists():
        return [path]
    inside = sorted(p.parent for p in path.glob(f"*/{METRICS_FILE}"))
    deeper = next(path.glob(f"*/*/**/{METRICS_FILE}"), None) if not inside else None
    if deeper is not None:  # an ablation (CELL/seedS) or a sweep (trials/NNNN): its runs are no one ensemble
        raise EmimicError(f"{path}: is no run nor a folder of runs to average (a CV folder); its runs lie deeper"
                          f" (e.g. {deeper.parent}), as in an ablation or a sweep; give the run folders to average.")
    # nothing inside either: the path itself, so that load_run says what is missing
    return inside or [path]


Runs = str | Path | TrainedModel | Sequence[str | Path | TrainedModel]


def load_models(runs: Runs) -> list[TrainedModel]:
    """The models of ``runs``: a trained model, a run folder, a folder of runs (a CV folder), or several; a run
    reached twice (``runs/cv`` and ``runs/cv/fold1-seed0``) is refused, as it would count twice in their mean."""
    models = [item for item in _given(runs) if isinstance(item, TrainedModel)]
    return models + [load_run(run) for run in ensemble_members(run_folders(runs))]


def _given(runs: Runs) -> list[str | Path | TrainedModel]:
    return [runs] if isinstance(runs, str | Path | TrainedModel) else list(runs)


def run_folders(runs: Runs) -> list[str | Path]:
    """The folders among ``runs`` (run folders, folders of runs), as given; a trained model in memory has none."""
    return [item for item in _given(runs) if not isinstance(item, TrainedModel)]


def ensemble_members(folders: Sequence[str | Path]) -> list[Path]:
    """The runs of ``folders`` (:func:`member_runs`); one that two of them reach is refused, as it would count twice
    in the mean."""
    reached_by: dict[Path, str | Path] = {}
    runs = []
    for folder in folders:
        for run in member_runs(folder):
            if run.resolve() in reached_by:
                first = reached_by[run.resolve()]
                # `cv1 ./cv1/` read as paths are spelled alike: naming both would say nothing
                by = "" if str(first) == str(folder) else f" (by {first} and by {folder})"
                raise EmimicError(f"{run}: is given twice{by}, so it would count twice in the mean of the"
                                  " predictions; give each run once.")
            reached_by[run.resolve()] = folder
            runs.append(run)
    return runs


def check_compatible(spec: ModelSpec, store: FeatureStore) -> None:
    """Refuse data that lacks a modality the model reads or whose width differs from training."""
    for modality in spec.inputs:
        if modality not in store.modalities:
            raise DataError(
                f"{store.manifest['root']}: has no {modality!r} features, which the model reads (it has"
                f" {store.modalities}); add that folder, or use a run trained without it."
            )
        expected = spec.dims.get(modality, 3)  # the observed VAD prior is 3 columns wide
        if store.dim(modality) != expected:
            raise DataError(
                f"modality {modality!r} is {store.dim(modality)} wide here but the model was trained on width"
                f" {expected}: features from a different extractor cannot be used with this model."
            )


def clip_loader(store: FeatureStore, spec: ModelSpec, model: AnyModel, ids: np.ndarray,
                targets: np.ndarray | None, *, batch_size: int, max_frames: int, seed: int | None = None,
                drop_last: bool = False, num_workers: int = 0, weights: np.ndarray | None = None,
                per_epoch: int | None = None) -> DataLoader:
    """Batches of the clips ``ids`` with every modality the model reads (frames only if it needs them).

    With a ``seed`` the clips are shuffled per (seed, epoch), ``per_epoch`` of them (default: all) drawn
    each epoch; without one they keep their order, or, for a model that reads frames, come sorted by
    length (so little padding is computed; the order is ``loader.batch_sampler``'s). A model reading
    frames is trained on :class:`LengthBuckets`. ``weights`` are per-clip loss weights (see
    :mod:`emimic.training.weights`).
    """
    dataset = ClipDataset(store, ids, targets, modalities=spec.inputs, sequences=model.uses_frames,
                          max_frames=max_frames, weights=weights)
    if model.uses_frames and seed is not None:
        batches: Sampler = LengthBuckets(dataset.sequence_lengths(), batch_size, seed, drop_last=drop_last,
                                         per_epoch=per_epoch)
    elif model.uses_frames:
        order = np.argsort(dataset.sequence_lengths(), kind="stable")
        batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    else:
        sampler = (EpochShuffle(len(ids), seed, per_epoch=per_epoch) if seed is not None
                   else SequentialSampler(dataset))
        batches = BatchSampler(sampler, batch_size, drop_last)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collate_clips, num_workers=num_workers,
                      persistent_workers=num_workers > 0)


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run a block with ``count`` intra-op CPU threads, then restore the caller's setting.

    The model's matrices are small: one thread is faster than several, and far faster when other
    work shares the cores (measured: 21k vs 9k clips/s of inference on 2 busy cores)."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def eval_batch_size(model: AnyModel, train_batch: int) -> int:
    """Pooled inputs are tiny, so inference takes big batches; sequences keep the training size."""
    return 2 * train_batch if model.uses_frames else INFERENCE_BATCH


def ensemble_predict_ids(models: Sequence[TrainedModel], store: FeatureStore, ids: np.ndarray) -> np.ndarray:
    """``(N, 6)`` mean of the models' predictions (fold and seed ensembles) for the clips ``ids``."""
    return np.mean([predict_ids(model, store, ids) for model in models], axis=0)


@torch.no_grad()
def predict_ids(trained: TrainedModel, store: FeatureStore, ids: np.ndarray,
                absent: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """``(N, 6)`` predictions in [0, 1] for the clips ``ids``. ``absent`` ({modality: (N,) bool}) flags clips
    as lacking a modality they have: the model takes them down the path of real missing data (robustness studies)."""
    check_compatible(trained.spec, store)
    trained.model.eval()
    batch = eval_batch_size(trained.model, trained.config.optim.batch_size)
    loader = clip_loader(store, trained.spec, trained.model, ids, None, batch_size=batch,
                         max_frames=trained.config.model.encoder.max_frames)
    out = np.zeros((len(ids), len(EMOTIONS)), np.float32)
    with torch_threads(trained.config.train.threads):
        for rows, batch in zip(loader.batch_sampler, loader, strict=True):
            for modality, hidden in (absent or {}).items():
                batch["inputs"][modality]["present"] &= ~torch.as_tensor(hidden[rows])
            out[rows] = trained.model(batch["inputs"]).pred.numpy()
    _check_finite_predictions(out, ids)
    return np.clip(out, 0.0, 1.0)


def _check_finite_predictions(preds: np.ndarray, ids: np.ndarray) -> None:
    """Refuse NaN/Inf predictions (finite weights can overflow too): the metric would leave those clips out and
    report a score of the others."""
    bad = ~np.isfinite(preds).all(axis=1)
    if bad.any():
        raise EmimicError(f"the model predicts NaN/Inf for {int(bad.sum())} of {len(ids)} clip(s) (e.g. Filename"
                          f" {int(ids[bad][0])}): these clips hold extreme feature values, or the training diverged;"
                          " check their features with `emimic validate`, or train the run again with --overwrite and"
                          " a lower learning rate (optim.lr).")


def _warn_featureless(models: Sequence[TrainedModel], store: FeatureStore, ids: np.ndarray, *, split: str,
                      where: str) -> None:
    """Warn of the clips of ``split`` that hold none of the modalities the models read: they are predicted (masked,
    never dropped), but from no input at all, the same value for each, which a submission would hide. That is data
    on a corpus whose clips may lack every modality, and a mistake when a clip's extraction failed or the split CSV
    lists a wrong id: the warning states the fact and suggests what to check."""
    read = sorted({modality for trained in models for modality in trained.spec.inputs})
    featureless = sorted(ids[~np.any([store.present(modality, ids) for modality in read], axis=0)].tolist())
    if featureless:
        warnings.warn(f"{where}{len(featureless)} of {len(ids)} clip(s) of the {split!r} split have none of the"
                      f" modalities the model reads ({', '.join(read)}): Filename {shortlist(featureless)}; each is"
                      " predicted from no input, the same value for all (if they should have features, extract them,"
                      " or check the ids of the split CSV).", EmimicWarning, stacklevel=3)


def _open(data: str | Path | VidmimicDataset, models: list[TrainedModel], *,
          progress: bool) -> tuple[VidmimicDataset, FeatureStore]:
    """The dataset and its store, packed where stale but for the modalities no model of ``models`` reads."""
    ds = data if isinstance(data, VidmimicDataset) else open_dataset(data)
    return ds, ds.store(progress=progress, needed={m for trained in models for m in trained.spec.inputs})


def coverage(store: FeatureStore, modalities: list[str], ids: np.ndarray) -> dict[str, float]:
    return {m: float(store.present(m, ids).mean()) if len(ids) else 0.0 for m in modalities}


def external_labels(path: str | Path, ids: np.ndarray, *, split: str) -> pd.DataFrame:
    """Labels of exactly the clips ``ids`` (in that order) from a split-format CSV such as held-out truth."""
    labels = read_split(path, require_labels=True)
    missing = np.setdiff1d(ids, labels.index.to_numpy(dtype=np.int64))
    if len(missing):
        shown = ", ".join(str(i) for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{path}: no labels for {len(missing)} clips of the {split!r} split ({shown}); give the"
                        f" labels file of that split.")
    return labels.loc[ids]


def evaluate(run: Runs, data: str | Path | VidmimicDataset, *, split: str = "valid",
             labels: str | Path | None = None, progress: bool = False, warn_featureless: bool = False) -> Evaluation:
    """Per-dimension PCC and mean PCC of a run on a split (every clip counts; none is dropped).

    ``run`` may also be several runs or a folder of runs (a CV folder): their predictions are averaged.
    The split's own labels are used unless ``labels`` names a CSV in the split format (e.g. a simulated
    corpus's held-out ``.truth/test_labels.csv``), which must label every clip of the split. With
    ``warn_featureless`` (what ``emimic evaluate`` asks; not the scores train, cv, ablate and report compute on
    the way), a warning names the clips predicted from no input (none of the modalities the run reads)."""
    models = load_models(run)
    trained = models[0]
    ds, store = _open(data, models, progress=progress)
    clips = ds.clips(split)
    check_pcc_size(clips, root=ds.root, split=repr(split), remedy="evaluate a larger split", where=ds.where)
    ids = clips.index.to_numpy(dtype=np.int64)
    if labels is not None:
        truth = external_labels(labels, ids, split=split)
    elif ds.has_labels(split):
        truth = ds.split(split)
    else:
        raise DataError(f"{ds.where}{ds.root}: the {split!r} split has no labels to evaluate against; give them"
                        f" with --labels FILE.")
    check_labels_vary(truth, root=ds.root, split=repr(split), purpose="score", where=ds.where)
    constant = constant_labels_sentence(truth, root=ds.root, split=split, scored=True, where=ds.where)
    if constant is not None:
        warnings.warn(constant, EmimicWarning, stacklevel=2)
    preds = ensemble_predict_ids(models, store, ids)
    if warn_featureless:
        _warn_featureless(models, store, ids, split=split, where=ds.where)
    targets = truth[list(EMOTIONS)].to_numpy(dtype=np.float64)
    scores = pcc_scores(preds, targets)
    modalities = list(trained.spec.modalities)
    clips = pd.DataFrame(
        {**{f"pred {e}": preds[:, k] for k, e in enumerate(EMOTIONS)},
         **{f"true {e}": targets[:, k] for k, e in enumerate(EMOTIONS)},
         **{f"has {m}": store.present(m, ids) for m in modalities}},
        index=pd.Index(ids, name="Filename"),
    )
    return Evaluation(split, len(ids), float(np.mean(list(scores.values()))), scores,
                      coverage(store, modalities, ids), clips)


def predict(run: Runs, data: str | Path | VidmimicDataset, *, split: str = "test",
            out: str | Path | None = None, overwrite: bool = False, progress: bool = False,
            warn_featureless: bool = True) -> pd.DataFrame:
    """Predictions for every clip of ``split`` as a submission frame; written (validated, atomically) to ``out``,
    which must lie outside the dataset root and the run folders read, and may replace an existing file only with
    ``overwrite``.

    ``run`` may be several runs or a folder of runs (a CV folder): the submission is the mean of their
    predictions (an ensemble of fold and seed models). Clips that have none of the modalities the models read
    are warned of, as a submission would hide them, unless ``warn_featureless`` is False."""
    if out is not None:
        check_output_file(out, dataset_root=data.root if isinstance(data, VidmimicDataset) else data,
                          runs=run_folders(run), overwrite=overwrite)
    models = load_models(run)
    ds, store = _open(data, models, progress=progress)
    ids = ds.clips(split).index.to_numpy(dtype=np.int64)
    frame = to_submission(ids, ensemble_predict_ids(models, store, ids))
    if warn_featureless:
        _warn_featureless(models, store, ids, split=split, where=ds.where)
    if out is not None:
        write_submission(frame, out, expected_ids=ids)
    return frame
