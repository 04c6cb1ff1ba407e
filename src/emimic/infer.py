"""``infer()``: predictions for new videos from a trained run, extracted exactly as its training data was.

A run records, per modality it reads, the extraction recipe (``_extractor.json``, see
:mod:`emimic.features.recipe`): extractor, options, parameters, frame sampling, seed and the
SHA-256 of its model. ``infer`` rebuilds those extractors, refuses to go on when a parameter or
the model differs here, extracts the given videos into a cache folder (never next to them; see
:func:`emimic.data.store.cache_dir`; a second infer of the same features of the same videos waits for the
first, then reuses them), packs them and predicts. A modality the run cannot
re-extract (pickles shipped with a dataset, an extractor unknown here) is an error naming it.

A clip that fails to decode or to extract is listed in :attr:`InferResult.failed` and left out of
the predictions; the batch goes on. A clip that merely lacks a signal (no audio track, no face)
is predicted from its other modalities, as in training.

Example::

    from emimic.infer import infer
    result = infer("runs/raw", ["new_videos/"], out="predictions.csv", plots="plots")
    result.predictions      # one row per clip: clip name and the six intensities
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emimic.data.layout import RECORDING_SUFFIXES, VIDEO_SUFFIXES
from emimic.data.store import CACHE_ENV, cache_dir
from emimic.defaults import LOCK_WAIT_SECONDS
from emimic.errors import ConfigError, DataError, EmimicWarning
from emimic.features.base import EXTRACTORS, Extractor
from emimic.features.ledger import read_errors
from emimic.features.media import dangling_links, unread_suffix
from emimic.features.pipeline import extract, make_spec
from emimic.features.recipe import decoder_change, extractor_model_digest, sidecar_params
from emimic.features.runner import ExtractSpec
from emimic.io import atomic_path
from emimic.labels import EMOTIONS
from emimic.outputs import Hold, check_output_file, exclusive_outputs, refuse_inside_runs
from emimic.training.inference import load_run, predict_ids

INFER_CACHE = "infer"
CLIP_COLUMN = "clip"
# Settings every extractor of one extraction run shares (ExtractSpec has one value of each).
_SHARED_VIDEO_PARAMS = ("fps", "max_side")


@dataclass(frozen=True)
class Recipe:
    """How to extract what a run reads: extractors with their options, frame sampling and seed."""

    options: dict[str, dict[str, Any]]  # extractor name -> its options, for every extractor to run
    records: dict[str, dict]  # output folder -> its recorded sidecar (the modalities and their transcripts)
    fps: float = 5.0
    max_side: int | None = 640
    seed: int = 0


@dataclass
class InferResult:
    """Predictions (``clip`` + six intensities), failed clips (``clip, file, extractor, error``), cache, plots."""

    predictions: pd.DataFrame
    failed: pd.DataFrame
    cache: Path
    plots: list[Path] = field(default_factory=list)


def collect_videos(inputs: Sequence[str | Path]) -> dict[str, Path]:
    """Clip name → video file for files and folders (searched recursively for video suffixes).

    The name is the file's path relative to the folder the inputs share, without its suffix, so
    clips of different folders never collide.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            files += _videos_in(path)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder; give video files or folders holding them.")
    unique = list(dict.fromkeys(p.resolve() for p in files))
    if not unique:
        shown = ", ".join(str(i) for i in inputs)
        raise DataError(f"no video file ({', '.join(VIDEO_SUFFIXES)}) in {shown}; give video files or folders.")
    base = Path(os.path.commonpath([str(p.parent) for p in unique]))
    return {p.relative_to(base).with_suffix("").as_posix(): p for p in unique}


def _videos_in(folder: Path) -> list[Path]:
    """The video files anywhere under ``folder`` (hidden names left alone); links to a missing file among them and
    recordings of other formats are named in a warning each, as they are not predicted."""
    listed = sorted(p for p in folder.rglob("*") if not any(part.startswith(".") for part in
                                                              p.relative_to(folder).parts))
    found = [p for p in listed if p.suffix.lower() in VIDEO_SUFFIXES]
    dangling = [p for p in found if p.is_symlink() and not p.exists()]
    if dangling:
        warnings.warn(EmimicWarning(dangling_links(dangling, "not predicted")), stacklevel=3)
    unread = [p.relative_to(folder).as_posix() for p in listed if _unread_recording(p, folder)]
    if unread:
        warnings.warn(EmimicWarning(unread_suffix(folder.resolve(), unread, VIDEO_SUFFIXES, "not predicted",
                                                  example="clip.3gp")), stacklevel=3)
    return [p for p in found if p.is_file()]


def _unread_recording(path: Path, folder: Path) -> bool:
    """Whether ``path`` (a file under the input ``folder``) is a recording infer leaves out that its user may have meant
    to predict: audio or video of another format, under no ``_`` name (bookkeeping, which extract skips too). Other
    files (notes, emimic's own predictions and plots, a run folder) are no clips: nothing to say of them."""
    suffix = path.suffix.lower()
    return (suffix in RECORDING_SUFFIXES and suffix not in VIDEO_SUFFIXES
            and not any(part.startswith("_") for part in path.relative_to(folder).parts) and path.is_file())


def _unusable(record: dict | None) -> str | None:
    """Why a recorded modality cannot be extracted again here (None when it can)."""
    if record is None:
        return "no extraction recipe: its features came with the dataset or from an unknown extractor"
    name = record.get("extractor")
    if name not in EXTRACTORS:
        return f"its extractor {name!r} is not available here"
    if "options" not in record:
        return "extracted by an emimic version that did not record the extractor's options"
    if "text" in EXTRACTORS[name].needs:
        transcript = record.get("transcript")
        if transcript is None:
            return "its transcripts came with the dataset, not from an extractor"
        return _unusable(transcript)
    return None


def _merge(into: dict[str, Any], key: str, value: Any, what: str) -> None:
    if into.setdefault(key, value) != value:
        raise ConfigError(
            f"the run's features were extracted with different {what} ({into[key]} and {value}); emimic infer"
            " extracts in one run, so retrain on features extracted with one setting."
        )


def run_recipe(recipes: dict[str, dict | None], modalities: Sequence[str], run: str | Path) -> Recipe:
    """The extraction that reproduces ``modalities`` from their recorded ``recipes`` (a ConfigError if none can)."""
    problems = {m: why for m in modalities if (why := _unusable(recipes.get(m)))}
    if problems:
        listed = "; ".join(f"{m} ({why})" for m, why in problems.items())
        raise ConfigError(
            f"{run} was trained on modalities that cannot be re-extracted from video: {listed}; train a run on"
            " features from `emimic extract` to use emimic infer."
        )
    records: dict[str, dict] = {}
    for modality in modalities:
        record = recipes[modality]
        assert record is not None  # checked above
        records[record.get("output", modality)] = record
        if record.get("transcript"):
            records[record["transcript"].get("output", "text")] = record["transcript"]
    options: dict[str, dict] = {}
    shared: dict[str, Any] = {}
    for record in records.values():
        _merge(options, record["extractor"], record["options"], f"{record['extractor']} options")
        _merge(shared, "seed", record.get("seed", 0), "seeds")
        for key in _SHARED_VIDEO_PARAMS:
            if key in record["params"]:
                _merge(shared, key, record["params"][key], key)
    return Recipe(options, records, **shared)


def _options_here(recipe: Recipe, model_dir: str | Path | None) -> dict[str, dict[str, Any]]:
    """Options to build the extractors with: the recorded ones, the model taken from ``model_dir`` when given,
    else from where it was at training time (its hash is checked either way)."""
    chosen: dict[str, dict[str, Any]] = {}
    recorded_models = {r["extractor"]: r["params"].get("model") for r in recipe.records.values()}
    for name, options in recipe.options.items():
        options = dict(options)
        if model_dir is not None:
            options.pop("model", None)
        elif recorded_models.get(name) is not None:
            options.setdefault("model", recorded_models[name])
        chosen[name] = options
    return chosen


def check_recipe(recipe: Recipe, extractors: list[Extractor], spec: ExtractSpec) -> None:
    """Refuse to extract when a parameter or a model here differs from what the run's features were made with."""
    by_name = {e.name: e for e in extractors}
    for output, record in recipe.records.items():
        extractor = by_name[record["extractor"]]
        extractor.check()  # a missing model is the clear ModelNotFoundError, before any hashing
        here = {k: v for k, v in sidecar_params(extractor, spec).items() if k != "model"}
        then = {k: v for k, v in record["params"].items() if k != "model"}
        if change := decoder_change(
            then, here,
            older="re-extract the training features with `emimic extract --overwrite` and retrain to use this run on"
            " new videos",
            newer="upgrade emimic (pip install -U emimic) to use this run on new videos",
        ):
            raise ConfigError(f"{output}/ {change}.")
        if here != then:
            raise ConfigError(f"{output}/ was extracted with {then}, but {extractor.name} here would use {here}.")
        digest = extractor_model_digest(extractor)
        then_digest = record.get("model_sha256")
        if digest != then_digest:
            raise ConfigError(
                f"{output}/ was extracted with a {extractor.name} model of SHA-256 {str(then_digest)[:12]}, but the"
                f" model at {extractor.model_location()} has {str(digest)[:12]}; pass --model-dir with the model the"
                " run was trained with."
            )


def infer_cache(recipe: Recipe, videos: dict[str, Path]) -> Path:
    """The cache folder of one (recipe, set of videos): the same command resumes, other inputs never mix in."""
    files = [(name, str(path), path.stat().st_size, path.stat().st_mtime_ns) for name, path in videos.items()]
    key = json.dumps({"recipe": recipe.records, "videos": files}, sort_keys=True, default=str)
    folder = cache_dir() / INFER_CACHE / hashlib.sha256(key.encode()).hexdigest()[:16]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"{folder}: cannot create the inference cache ({exc.strerror}); set {CACHE_ENV} to a writable folder."
        ) from None
    return folder


def cache_hold() -> Hold:
    """How an infer holds its cache folder (one per extraction recipe and set of videos): another infer of the same
    features of the same videos is waited for (at most ``LOCK_WAIT_SECONDS``), and its finished clips are then
    reused."""
    return Hold("infer", wait=LOCK_WAIT_SECONDS,
                busy="another emimic infer of the same features of the same videos is extracting them into this"
                     " cache",
                advice="run this command again when it has ended: it then reuses that one's features")


def _failures(errors_csv: Path, names: dict[int, str]) -> pd.DataFrame:
    errors = read_errors(errors_csv)
    errors.insert(0, CLIP_COLUMN, errors.pop("clip").map(names))
    return errors


class AbsentModalities:
    """A store view in which modalities that no input video yielded exist, with every clip absent.

    Masked exactly like a clip without that modality in training, so one silent video (no transcript,
    hence no ``text_emb`` anywhere) is still predicted from its other modalities.
    """

    def __init__(self, store: Any | None, widths: dict[str, int]) -> None:
        self._store, self._widths = store, widths

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @property
    def modalities(self) -> list[str]:
        return sorted({*(self._store.modalities if self._store is not None else ()), *self._widths})

    def dim(self, modality: str) -> int:
        return self._widths[modality] if modality in self._widths else self._store.dim(modality)

    def present(self, modality: str, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        if modality in self._widths:
            return np.zeros(len(ids), dtype=bool)
        return self._store.present(modality, ids)

    def lengths(self, modality: str, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        if modality in self._widths:
            return np.zeros(len(ids), dtype=np.int64)
        return self._store.lengths(modality, ids)

    def pooled(self, modality: str, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        if modality in self._widths:
            return np.zeros((len(ids), 4 * self._widths[modality]), dtype=np.float32)
        return self._store.pooled(modality, ids)

    def spans(self, modality: str, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if modality in self._widths:
            return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=np.int64)
        return self._store.spans(modality, ids)

    def frame_rows(self, modality: str) -> np.ndarray:
        if modality in self._widths:
            return np.zeros((0, self._widths[modality]), dtype=np.float32)
        return self._store.frame_rows(modality)


def _predict(run: Any, root: Path, ids: dict[int, str], progress: bool) -> pd.DataFrame:
    """Pack the extracted features of ``root`` and predict the clips ``ids`` (id → name)."""
    from emimic.data.layout import discover
    from emimic.data.store import FeatureStore, default_store_dir, pack

    store_dir = default_store_dir(root)
    if discover(root).modalities:
        pack(root, store_dir=store_dir, progress=progress)
    store = FeatureStore.open(store_dir) if (store_dir / "manifest.json").is_file() else None
    absent = [m for m in run.spec.inputs if store is None or m not in store.modalities]
    # The observed VAD prior is 3 values wide and has no branch width of its own (as in check_compatible).
    view = AbsentModalities(store, {m: run.spec.dims.get(m, 3) for m in absent})
    order = np.array(sorted(ids), dtype=np.int64)
    frame = pd.DataFrame(predict_ids(run, view, order), columns=list(EMOTIONS))
    frame.insert(0, CLIP_COLUMN, [ids[i] for i in order])
    return frame


def write_predictions(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(Path(path)) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")


def infer(
    run: str | Path,
    inputs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    plots: str | Path | None = None,
    model_dir: str | Path | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> InferResult:
    """Predict the six intensities of every video in ``inputs`` (files or folders) with the run ``run``.

    ``out`` writes the predictions as CSV (``clip`` + six columns, atomically); ``plots`` writes one
    PNG per clip into that folder; ``model_dir`` holds the extractors' models when they are no
    longer where training found them. ``workers`` local processes extract in parallel. Neither is written inside
    the run folder, and an existing ``out`` is replaced only with ``overwrite``.
    """
    if out is not None:
        check_output_file(out, dataset_root=None, runs=[run], overwrite=overwrite)
    if plots is not None:
        refuse_inside_runs(plots, [run])
    trained = load_run(run)
    recipe = run_recipe(trained.data.get("recipes") or {}, trained.spec.inputs, run)
    videos = collect_videos(inputs)
    cache = infer_cache(recipe, videos)
    options = _options_here(recipe, model_dir)
    settings = {"model_dir": model_dir, "fps": recipe.fps, "max_side": recipe.max_side, "seed": recipe.seed}
    spec = make_spec(cache, list(options), options, **settings)
    check_recipe(recipe, spec.build(), spec)
    names = dict(enumerate(videos, start=1))
    # Another infer of the same features of the same videos (a second notebook) shares this cache: one extracts and
    # packs at a time (each would delete the temporary files of the other), the second then reuses what it finished.
    with exclusive_outputs([cache], cache_hold()):
        summary = extract(cache, spec.names, options=options, workers=workers, progress=progress,
                          videos={i: videos[name] for i, name in names.items()}, **settings)
        failed = _failures(Path(summary.attrs["errors"]), names)
        ok = {i: name for i, name in names.items() if name not in set(failed[CLIP_COLUMN])}
        predictions = (_predict(trained, cache, ok, progress) if ok
                       else pd.DataFrame(columns=[CLIP_COLUMN, *EMOTIONS]))
    if out is not None:
        write_predictions(predictions, out)
    written = plot_clips(predictions, plots) if plots is not None else []
    return InferResult(predictions, failed, cache, written)


def plot_clips(predictions: pd.DataFrame, folder: str | Path) -> list[Path]:
    """One bar chart of the six intensities per clip, ``folder/<clip>.png`` (the report's emotion colours)."""
    from matplotlib.figure import Figure

    from emimic.report import DPI, EMOTION_COLOURS

    folder = Path(folder)
    written = []
    for _, row in predictions.iterrows():
        figure = Figure(figsize=(5, 2.6), dpi=DPI, layout="constrained")
        ax = figure.add_subplot()
        values = [float(row[e]) for e in EMOTIONS]
        ax.barh(list(EMOTIONS), values, color=[EMOTION_COLOURS[e] for e in EMOTIONS])
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_xlabel("predicted intensity")
        ax.set_title(str(row[CLIP_COLUMN]), loc="left", fontsize=10)
        path = folder / f"{str(row[CLIP_COLUMN]).replace('/', '__')}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png")
        written.append(path)
    return written
