"""What a run was made from: the record that decides whether a later ``train`` may reuse its folder, and the
block that reports a figure with its provenance.

``RUN/run.json`` is written when a run starts, next to ``RUN/config.yaml`` (the resolved config,
seed included)::

    {"emimic": "0.1.0", "model_format": 2, "created": "2026-11-25T22:40:00+00:00", "config": "paper", "seed": 0,
     "dataset": {"root": "/data/sim", "fingerprint": "9f2c...", "content_of": "labelled clips",
                 "modalities": {"vit": {"dim": 384, "dtype": "float32", "content": "51ab..."}, ...},
                 "labels": {"train": "c0de...", "valid": "77aa..."}}}

The data fingerprint depends on content only: the checksums of the feature files the model reads
of the clips trained and validated on (kept by the FeatureStore; a test clip's features extracted
later change nothing, unless a one-pickle modality holds them with the others), their width and stored
dtype, and the ids and labels of those clips. A copied
or moved dataset is the same data; an edited label or a re-extracted modality is not.
``content_of`` marks this scope: a record without it (and a folder fingerprint made without it) was made by an
earlier emimic whose content digest covered every clip's features (the raw bytes of each ``sources.csv``), and is
compared with the digest of the data as that emimic computed it, so a run or folder made before keeps resuming
and reporting on unchanged data.
:func:`read_run_record` is the one reader of this record (metrics and reports take their provenance
from it). A folder of many runs (``cv``, ``ablate``, ``sweep``)
records :func:`corpus_fingerprint`: the modalities its runs may read, and the train and valid labels.

``model_format`` is the model format of the emimic that trained the run (:mod:`emimic.models.formats`): every
loading and resuming of a run checks it (:func:`read_model_format`, :func:`check_model_format`).

``RUN/metrics.json`` carries the scores with a ``provenance`` block (:func:`metrics_record`): a
figure is only worth reporting with its provenance (DESIGN.md, trust rules): the config (name, where
it came from, every resolved setting), the seed, the data (path, the fingerprint of ``run.json``,
split sizes, modality coverage), the emimic version, the oracle ceiling when the corpus is
simulated, the bootstrap confidence interval of each score, the wall time and whether training
stopped early or hit its limit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emimic import __version__
from emimic.config import ExperimentConfig, load_config
from emimic.data.simulate import load_oracle
from emimic.data.store import FeatureStore
from emimic.errors import DataError, IncompatibleRun
from emimic.labels import EMOTIONS
from emimic.metrics import pcc_intervals
from emimic.models.formats import FIRST_FORMAT, MODEL_FORMAT, changes_since

if TYPE_CHECKING:
    from emimic.data import VidmimicDataset
    from emimic.training.inference import Evaluation
    from emimic.training.run import TrainResult

RECORD_FILE = "run.json"
FORMAT_KEY = "model_format"
# The splits a model trains and validates on: what its data fingerprint covers.
TRAINING_SPLITS = ("train", "valid")
CONFIG_FILE = "config.yaml"
# Differences named in a refusal; the rest are counted.
SHOWN_DIFFERENCES = 3
# What a fingerprint's content digests cover, recorded with them: the features of the clips whose labels it holds.
CONTENT_OF = "labelled clips"


@dataclass(frozen=True)
class DataFingerprint:
    """The content a run was trained on."""

    modalities: dict[str, dict[str, Any]]  # per modality the model reads: dim, dtype, content digest
    labels: dict[str, str]  # per split trained or validated on: digest of its clip ids and labels
    content_of: str | None = CONTENT_OF  # None: recorded by an earlier emimic, its digests cover every clip
    # per modality, the content digest of every clip (the whole sources.csv): what an earlier emimic recorded
    every_clip: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    # the validation share held out of train (held_out_record); None: a valid split, or a run recorded before
    # emimic recorded it. Not in the digest: the labels of train and valid already tell which clips were held out.
    held_out: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def digest(self) -> str:
        scope = {} if self.content_of is None else {"content_of": self.content_of}
        payload = json.dumps({"modalities": self.modalities, "labels": self.labels, **scope}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def as_recorded_by(self, content_of: str | None) -> DataFingerprint:
        """This data's fingerprint as the emimic that recorded one marked ``content_of`` computed it: itself, or
        for a record without the mark, with the content digests of every clip (the whole ``sources.csv``)."""
        if content_of is not None:
            return self
        modalities = {name: {**entry, "content": self.every_clip[name]} for name, entry in self.modalities.items()}
        return replace(self, modalities=modalities, content_of=None)

    def matches(self, recorded: str) -> bool:
        """Whether the digest ``recorded`` (a folder's corpus fingerprint) is of this data, as recorded now or by
        an earlier emimic (whose digest, made without the mark, covered every clip)."""
        return recorded in (self.digest, self.as_recorded_by(None).digest)


def _labels_digest(ids: np.ndarray, targets: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(targets, dtype=np.float64).tobytes())
    return digest.hexdigest()


def data_fingerprint(store: FeatureStore, modalities: Sequence[str],
                     labelled: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> DataFingerprint:
    """Fingerprint of ``modalities`` of ``store`` and of the ``{split: (ids, targets)}`` used in training: the
    features of the clips of those splits only, as nothing else enters the scores."""
    clips = np.unique(np.concatenate([ids for ids, _ in labelled.values()]))
    features = {
        name: {"dim": store.dim(name), "dtype": store.identity[name]["dtype"],
               "content": store.content_digest(name, clips)}
        for name in sorted(modalities)
    }
    labels = {split: _labels_digest(ids, targets) for split, (ids, targets) in sorted(labelled.items())}
    return DataFingerprint(features, labels, every_clip={name: store.content_digest(name) for name in features})


def labelled_splits(ds: VidmimicDataset, splits: Sequence[str] = TRAINING_SPLITS
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (ids, targets)}`` of ``splits`` (default train and valid); one that is missing or unlabelled is
    refused."""
    labelled = {}
    for split in splits:
        if split in ds.splits:
            ds.clips(split)  # an empty split is refused by name, not as an unlabelled one
        if split not in ds.splits or not ds.has_labels(split):
            raise DataError(f"{ds.root}: training needs a labelled {split!r} split.")
        table = ds.splits[split]
        labelled[split] = (table.index.to_numpy(dtype=np.int64), table[list(EMOTIONS)].to_numpy(dtype=np.float32))
    return labelled


@dataclass(frozen=True)
class FolderData:
    """The data digest a folder of many runs (``cv``, ``ablate``, ``sweep``) records in its settings."""

    digest: str  # this data's, as this emimic computes it
    recorded: str  # the folder's own, when that is this data's as an earlier emimic computed it; else ``digest``

    def to_record(self, *, replaced: bool) -> str:
        """What the folder records from now on: a folder resumed keeps its own digest (its settings, and a sweep's
        study named by them, stay the same); one ``replaced`` (``--overwrite``) starts afresh with ``digest``, as an
        earlier emimic's covers every clip's features, and features of a test clip extracted later would make the
        new folder refuse to resume as made with other data."""
        return self.digest if replaced else self.recorded


def corpus_fingerprint(ds: VidmimicDataset, store: FeatureStore, settings_file: Path,
                       needed: Collection[str] | None) -> FolderData:
    """The digest of the modalities of ``store`` that the runs of a folder of many runs (``cv``, ``ablate``,
    ``sweep``) may read (``needed``; ``None``: every modality) and of the labels of train and valid (those present:
    ``cv`` folds a corpus without a valid split): what the folder records in ``settings_file``, so that a modality no
    run reads, extracted or changed later, leaves it resumable; with the digest the folder recorded, when that is of
    this data as an earlier emimic computed it (:meth:`FolderData.to_record` says which to record)."""
    present = [split for split in TRAINING_SPLITS if split in ds.splits]
    labelled = labelled_splits(ds, present)
    read = [name for name in store.modalities if needed is None or name in needed]
    now = data_fingerprint(store, read, labelled)
    recorded = _recorded_setting(settings_file, "data")
    # an earlier emimic's digest covered every modality, whichever its runs read
    kept = isinstance(recorded, str) and (now.matches(recorded) or (
        len(read) < len(store.modalities) and data_fingerprint(store, store.modalities, labelled).matches(recorded)))
    return FolderData(now.digest, recorded if kept else now.digest)


def _recorded_setting(settings_file: Path, key: str) -> Any:
    """The setting ``key`` recorded in the folder's ``settings_file``; None when there is none to read (a file that
    is no JSON object is refused by the check of the folder's settings)."""
    try:
        stored = json.loads(settings_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return stored.get(key) if isinstance(stored, dict) else None


@dataclass(frozen=True)
class RunRecord:
    """Provenance of a run: the resolved config (seed included), the data and the emimic that made it."""

    config: ExperimentConfig
    data: DataFingerprint | None  # None: a run made before emimic recorded its data
    dataset_root: str = ""
    emimic_version: str = __version__
    created: str = ""
    model_format: int = MODEL_FORMAT

    def to_dict(self) -> dict[str, Any]:
        """What ``run.json`` holds (the full config is ``config.yaml``)."""
        assert self.data is not None, "a new run always knows its data"
        dataset = {"root": self.dataset_root, "fingerprint": self.data.digest, "content_of": self.data.content_of,
                   "modalities": self.data.modalities, "labels": self.data.labels, "held_out": self.data.held_out}
        return {"emimic": self.emimic_version, FORMAT_KEY: self.model_format, "created": self.created or _now(),
                "config": self.config.name, "seed": self.config.seed, "dataset": dataset}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _stored_record(run: Path) -> dict[str, Any] | None:
    """The content of ``run.json``, or None when there is none; a file that is no JSON object is refused."""
    path = run / RECORD_FILE
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        stored = exc
    if not isinstance(stored, dict):
        detail = f" ({stored})" if isinstance(stored, Exception) else ""
        raise IncompatibleRun(f"{path}: cannot be read as the record of a run{detail}",
                              "restore the file emimic wrote, or train the run again with --overwrite")
    return stored


def read_model_format(run: str | Path) -> int:
    """The model format of the run folder ``run`` (:data:`FIRST_FORMAT` when its ``run.json`` records none, or
    when it has no ``run.json``); a format newer than this emimic knows is refused, before anything else of the
    run is read (a newer emimic's config may not even parse here)."""
    run = Path(run)
    return _model_format(run, _stored_record(run))


def _model_format(run: Path, stored: dict[str, Any] | None) -> int:
    """The model format ``stored`` (the run's ``run.json``, None: none) records, checked as
    :func:`read_model_format` says."""
    made_with = (stored or {}).get(FORMAT_KEY, FIRST_FORMAT)
    if type(made_with) is not int or made_with < FIRST_FORMAT:  # not isinstance: True is no format
        raise IncompatibleRun(f"{run / RECORD_FILE}: {FORMAT_KEY} {made_with!r} is not a model format (a whole number"
                              f" from {FIRST_FORMAT})", "restore the file emimic wrote, or train the run again with"
                              " --overwrite")
    if made_with > MODEL_FORMAT:
        raise IncompatibleRun(f"{run} was made by a newer emimic (model format {made_with}; emimic {__version__}"
                              f" knows formats up to {MODEL_FORMAT})",
                              "upgrade emimic to use it, or train it again with --overwrite")
    return made_with


def check_model_format(run: str | Path, made_with: int, config: ExperimentConfig) -> None:
    """Refuse the run folder ``run``, trained with ``config`` by an emimic of model format ``made_with``, when a
    later change alters its predictions (see :mod:`emimic.models.formats`): its weights were trained for what
    the model computed then."""
    changes = changes_since(made_with, config)
    if changes:
        what = "; and ".join(change.what for change in changes)
        raise IncompatibleRun(f"{run} was trained with model format {made_with}, and since format"
                              f" {changes[0].format} {what}",
                              "train it again with this emimic (the same emimic train command with --overwrite)")


def read_run_record(run: str | Path) -> RunRecord | None:
    """The record of the run folder ``run``, or None when it holds no run (no ``config.yaml``); a run of a newer
    model format than this emimic knows is refused (:func:`read_model_format`)."""
    run = Path(run)
    stored = _stored_record(run)
    made_with = _model_format(run, stored)
    if not (run / CONFIG_FILE).exists():
        return None
    config = load_config(run / CONFIG_FILE)
    if stored is None:
        return RunRecord(config, None, model_format=made_with)
    dataset = stored["dataset"]
    data = DataFingerprint(dataset["modalities"], dataset["labels"], dataset.get("content_of"),
                           held_out=dataset.get("held_out"))
    return RunRecord(config, data, dataset["root"], stored["emimic"], stored["created"], made_with)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _config_differences(old: ExperimentConfig, new: ExperimentConfig) -> list[str]:
    before, after = _flatten(old.model_dump(mode="json")), _flatten(new.model_dump(mode="json"))
    return [f"{key} was {before.get(key)!r}, now {after.get(key)!r}"
            for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)]


def _data_differences(old: DataFingerprint | None, new: DataFingerprint, *, dtype: bool = True) -> list[str]:
    """What differs between the data ``old`` and ``new``; the stored dtype only with ``dtype`` (it changes the
    numbers training sees, not which data is meant)."""
    if old is None:
        return ["its data was not recorded (it was made by an earlier emimic)"]
    if old.modalities.keys() != new.modalities.keys():
        return [f"it read modalities {', '.join(old.modalities)}, now {', '.join(new.modalities)}"]
    new = new.as_recorded_by(old.content_of)
    found = []
    for name, was in old.modalities.items():
        now = new.modalities[name]
        if was["dim"] != now["dim"]:
            found.append(f"{name!r} features were {was['dim']} wide, now {now['dim']}")
        elif dtype and was["dtype"] != now["dtype"]:
            found.append(f"{name!r} features were stored as {was['dtype']}, now {now['dtype']}")
        elif was["content"] != now["content"]:
            found.append(f"the {name!r} feature files differ")
    labels = [split for split in sorted(old.labels.keys() | new.labels.keys())
              if old.labels.get(split) != new.labels.get(split)]
    if labels and old.held_out is None and (new.held_out or {}).get("group_column"):
        # most likely the same corpus and command: an earlier emimic held out clips one by one, whatever the groups
        return [*found, f"it held out clips of train one by one (made by an earlier emimic, or before the"
                        f" {new.held_out['group_column']!r} column was added); emimic now holds out whole"
                        f" {new.held_out['group_column']!r} groups for --valid-fraction"]
    return found + [f"the {split} labels differ" for split in labels]


def held_out_record(ds: VidmimicDataset) -> dict[str, Any] | None:
    """What a run records of the validation share ``ds`` holds out of train (``None``: it holds none out): its
    fraction, and the group column whose whole groups it is made of (``None``: clips one by one)."""
    return None if ds.held_out_fraction is None else {"fraction": ds.held_out_fraction, "group_column": ds.held_out_by}


def data_differences(run: str | Path, ds: VidmimicDataset) -> list[str]:
    """How ``ds`` (as the run saw it: its fold or held-out view) differs from the data the run folder ``run`` was
    trained on, in the words of train's refusal; empty when it is the same, or when the run did not record it. The
    stored dtype is left out: the same features packed at float16 are the same data to score a run on."""
    record = read_run_record(run)
    if record is None or record.data is None:
        return []
    store = ds.store(progress=False, needed=set(record.data.modalities))  # as evaluate opens it for this run
    now = data_fingerprint(store, [m for m in record.data.modalities if m in store.modalities],
                           labelled_splits(ds, sorted(record.data.labels)))
    return _data_differences(record.data, now, dtype=False)


def differences(old: RunRecord, new: RunRecord) -> list[str]:
    """What differs between the run ``old`` and the one requested as ``new``, in words (empty: the same run)."""
    assert new.data is not None, "a requested run always knows its data"
    return _config_differences(old.config, new.config) + _data_differences(old.data, new.data)


def describe(found: Sequence[str]) -> str:
    """``found`` as one clause: the first few differences, then a count of the rest."""
    shown = "; ".join(found[:SHOWN_DIFFERENCES])
    rest = len(found) - SHOWN_DIFFERENCES
    return shown + (f"; and {rest} more" if rest > 0 else "")


def config_name(config_source: str | Path | None, cfg: ExperimentConfig) -> str:
    """What a run or a folder of runs calls its config: a YAML file's stem (a run from ``my.yaml`` is ``my``, not the
    preset its file may start from), else the preset's or the config's own name."""
    return Path(config_source).stem if config_source is not None else cfg.name


def _describe_source(config_source: str | Path | None, cfg: ExperimentConfig) -> str:
    if config_source is None:
        return f"preset {cfg.name}"
    path = Path(config_source)
    return str(path.resolve()) if path.exists() else f"preset {config_source}"


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
        FORMAT_KEY: MODEL_FORMAT,
        "config": {
            "name": config_name(config_source, cfg),
            "source": _describe_source(config_source, cfg),
            "resolved": cfg.model_dump(mode="json"),
        },
        "seed": cfg.seed,
        "data": {
            "root": str(Path(data.root).resolve()),
            "fingerprint": fingerprint.digest,
            "content_of": fingerprint.content_of,
            "modalities": fingerprint.modalities,
            "labels": fingerprint.labels,
            "split_sizes": data.split_sizes(),
            "held_out": held_out_record(data),
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


def score_provenance(runs: Sequence[str | Path], data: VidmimicDataset, evaluation: Evaluation) -> dict[str, Any]:
    """What a score written outside a run folder (``evaluate --json``) was made from: each run averaged (its folder,
    whose ``config.yaml`` is the config that ran, config name and seed) and the data (root; fingerprint of every
    modality and of the clips and labels scored), so that two score files can be told apart and compared."""
    _, targets = evaluation.arrays()
    ids = evaluation.clips.index.to_numpy(dtype=np.int64)  # type: ignore[union-attr]  # arrays() checked it
    store = data.store(progress=False)
    fingerprint = data_fingerprint(store, store.modalities, {evaluation.split: (ids, targets)})
    return {
        "emimic_version": __version__,
        "runs": [_run_identity(Path(run)) for run in runs],
        "data": {"root": str(Path(data.root).resolve()), "fingerprint": fingerprint.digest},
    }


def _run_identity(run: Path) -> dict[str, Any]:
    """A run's folder, config name and seed; the name is the one its ``metrics.json`` and its report give (a run
    from ``my.yaml`` is ``my``), else that of its ``config.yaml``."""
    from emimic.training.run import METRICS_FILE, read_metrics  # run.py imports this module

    record = read_run_record(run)
    config = record.config if record is not None else None
    stored = read_metrics(run).get("provenance", {}).get("config", {}) if (run / METRICS_FILE).exists() else {}
    return {"run": str(run.resolve()), "config": stored.get("name", config and config.name),
            "seed": config and config.seed}
