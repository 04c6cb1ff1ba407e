"""Inspect a dataset root and list every problem, instead of failing on the first one.

``validate(root)`` reads every split CSV and every per-clip array once and returns a
:class:`ValidationReport`: clip counts, modality shapes and lengths, missing-modality counts
and problems. Problems of severity ``error`` make training impossible (``report.ok`` is then
False and ``emimic validate`` exits non-zero); ``warning`` ones are worth a look.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from emimic.data.holdout import check_valid_size, grouped_words, resolve_valid_split
from emimic.data.layout import SPLIT_FILES, DatasetLayout, ModalitySource, discover, duplicate_sentence, read_mapping
from emimic.data.store import (
    FLOAT32_ROUNDING,
    VALID_FEATURES_WAY_OUT,
    RoundingHarm,
    checked_feature_names,
    featureless_valid_sentence,
    no_frames_sentence,
    untrainable_sentence,
    width_tie_sentence,
)
from emimic.data.vad_columns import acoustic_modality, axis_columns, observed_vad_modality
from emimic.defaults import DEFAULT_OBSERVED_VAD
from emimic.errors import DataError, EmptyFeatures, emimic_warnings_to
from emimic.io import decode_object, float32_rounds, frame_array, read_error, single_precision, to_numpy, unwrap
from emimic.labels import (
    EMOTIONS,
    constant_emotions,
    constant_labels_sentence,
    empty_split_sentence,
    read_meta,
    read_split,
    shortlist,
)
from emimic.progress import progress_bar

# train refuses a valid split without features only when it selects an epoch on it, as it does by default.
_SELECTION_WAY_OUT = f"train refuses it under train.selection: best (the default), so {VALID_FEATURES_WAY_OUT}"


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" or "warning"
    where: str
    message: str


@dataclass
class ValidationReport:
    root: Path
    splits: pd.DataFrame
    modalities: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def shown_path(path: Path, root: Path) -> str:
    """``path`` as the user finds it in the layout: ``vit/00024.pkl``, relative to the dataset root."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _read_splits(layout_split_files: dict[str, Path], problems: list[Problem]) -> dict[str, pd.DataFrame]:
    frames: dict[str, pd.DataFrame] = {}
    for split, path in layout_split_files.items():
        try:
            frames[split] = read_split(path, require_labels=split != "test")
            # groups and rater counts: train reads them whatever its config, and warns of a count far above the rest
            with emimic_warnings_to(lambda warning, name=path.name: problems.append(
                    Problem("warning", name, str(warning)))):
                read_meta(path)
        except DataError as exc:
            problems.append(Problem("error", path.name, str(exc)))
            if split not in frames:
                continue
        if frames[split].empty:  # training cannot do without train or valid; predict has nothing to do
            severity = "warning" if split == "test" else "error"
            problems.append(Problem(severity, path.name, empty_split_sentence(path)))
    seen: dict[int, str] = {}
    for split, frame in frames.items():
        for clip_id in frame.index:
            if clip_id in seen:
                problems.append(
                    Problem("error", f"{split}_split", f"Filename {clip_id} is in both {seen[clip_id]} and {split}.")
                )
            seen.setdefault(int(clip_id), split)
    return frames


def _scan_modality(source: ModalitySource, root: Path, problems: list[Problem], bar, task) -> dict:
    """Read every clip of one modality; return its widths, dtypes and lengths."""

    def relative(path: Path) -> str:
        return shown_path(path, root)

    where_of: dict[int, str] = {}
    lengths: dict[int, int] = {}
    widths: dict[int, int] = {}
    dtypes: Counter[str] = Counter()
    if source.container is not None:
        try:
            items = sorted(read_mapping(source.container).items())  # in id order, as pack reads them
        except DataError as exc:
            problems.append(Problem("error", source.name, str(exc)))
            items = []
        container = relative(source.container)
        loaders = [(clip_id, f"{container} [id {clip_id}]", lambda v=value: v) for clip_id, value in items]
    else:
        loaders = [
            (clip_id, relative(path), lambda p=path: decode_object(p.read_bytes(), p.suffix, source=relative(p)))
            for clip_id, path in sorted(source.files.items())
        ]
    bar.update(task, total=len(loaders))
    empty: list[str] = []
    harm: RoundingHarm | None = None  # what the cast to float32 does to the clips of a wider dtype, as pack judges it
    for clip_id, where, load in loaders:
        where_of[clip_id] = where
        try:
            value = load()
            dtypes[str(to_numpy(unwrap(value, source=where)).dtype)] += 1
            frames = frame_array(value, source=where)
            single = single_precision(frames, source=where)
        except EmptyFeatures:
            empty.append(where)
        except DataError as exc:
            problems.append(Problem("error", source.name, str(exc)))
        except Exception as exc:
            problems.append(Problem("error", source.name, str(read_error(where, exc))))
        else:
            lengths[clip_id], widths[clip_id] = frames.shape
            if float32_rounds(frames.dtype):
                harm = harm or RoundingHarm(frames.shape[1], FLOAT32_ROUNDING)
                if frames.shape[1] == harm.dim:  # a clip of another width is reported below
                    harm.add(frames, single)
        bar.advance(task)
    if harm is not None and (refusal := harm.refusal(relative(source.container or source.path), source.name)):
        problems.append(Problem("error", source.name, refusal))
    if empty and len(empty) == len(loaders):  # what pack refuses: no frame to learn from
        problems.append(Problem("error", source.name, no_frames_sentence(relative(source.path), source.name)))
    elif empty:
        problems.append(
            Problem("warning", source.name,
                    f"{len(empty)} file(s) hold zero frames and are masked: {shortlist(empty)}.")
        )
    for first, second in source.duplicates:
        problems.append(
            Problem("error", source.name, duplicate_sentence(relative(second), f"clip {first.stem}", relative(first)))
        )
    for path in source.stray:
        problems.append(Problem("warning", source.name, f"{relative(path)}: file name is not a clip id; ignored."))
    width = Counter(widths.values()).most_common(1)[0][0] if widths else None
    tie = width_tie_sentence(relative(source.container or source.path), source.name, widths)
    if tie:  # no clip is the odd one
        problems.append(Problem("error", source.name, tie))
    else:
        problems += [Problem("error", source.name, f"{where_of[clip_id]}: feature width {w}; the modality's is"
                             f" {width}.") for clip_id, w in widths.items() if w != width]
    return {"lengths": lengths, "width": width, "dtypes": dtypes}


def _check_valid_split(
    root: Path, splits: dict[str, pd.DataFrame], split_files: Mapping[str, Path], valid_fraction: float | None,
    problems: list[Problem]
) -> None:
    """Report what ``train`` will do for model selection: the same refusal, or the clips it will hold out."""
    if "train" not in splits:
        return
    try:
        used, grouped_by = resolve_valid_split(splits, valid_fraction, root=root, split_files=split_files)
        if len(used["valid"]):  # an empty valid_split.csv is reported as such
            check_valid_size(used["valid"], root=root, fraction=valid_fraction)
    except DataError as exc:
        problems.append(Problem("error", "splits", str(exc)))
        return
    if "valid" not in splits:
        held = used["valid"].index
        whole = f" ({grouped_words(grouped_by)})" if grouped_by else ""
        problems.append(
            Problem("warning", "splits", f"no {SPLIT_FILES['valid'][0]}: train --valid-fraction {valid_fraction} will"
                    f" hold out {len(held)} of {len(splits['train'])} train clips{whole} for validation:"
                    f" {shortlist(held)}.")
        )


def _check_feature_names(layout: DatasetLayout, widths: dict[str, int], problems: list[Problem]) -> None:
    """Report what ``pack`` and ``train`` refuse of the feature names recorded with the modalities of ``widths``
    ({modality: width}, those training reads): a count other than the width (an error), and an observed VAD modality
    whose names do not tell its axes apart (a warning: ``train`` refuses it under the default config, which validate
    cannot know is the one used; under no_vad it is an ordinary branch)."""
    names: dict[str, list[str] | None] = {}
    for name, width in widths.items():
        try:
            names[name] = checked_feature_names(layout.modalities[name], width)
        except DataError as exc:
            problems.append(Problem("error", name, str(exc)))
    observed = observed_vad_modality(DEFAULT_OBSERVED_VAD, acoustic_modality(sorted(widths)), widths)
    if observed in names:
        try:
            axis_columns(observed, names[observed])
        except DataError as exc:
            problems.append(Problem("warning", observed, f"under the default config (model.vad.observed:"
                                    f" {DEFAULT_OBSERVED_VAD}, as every preset but no_vad sets it) train refuses"
                                    f" this: {exc}"))


def validate(root: str | Path, *, valid_fraction: float | None = None, progress: bool = True) -> ValidationReport:
    """Read everything under ``root`` and report splits, modalities and problems.

    ``valid_fraction`` is ``train``'s option for a corpus without a valid split: the report then
    lists the clips it will hold out, and refuses the corpus with ``train``'s sentence without it.
    """
    layout = discover(root)
    problems: list[Problem] = []
    if "train" not in layout.split_files:
        problems.append(Problem("error", "splits", f"no {SPLIT_FILES['train'][0]}: nothing to train on."))
    splits = _read_splits(layout.split_files, problems)
    _check_valid_split(layout.root, splits, layout.split_files, valid_fraction, problems)
    all_ids = set().union(*(frame.index for frame in splits.values())) if splits else set()
    if not layout.modalities:
        problems.append(Problem("error", "modalities", "no folder of per-clip .pkl/.npy/.pt feature files found."))
    for path in layout.escaping_links:
        shown = shown_path(path, layout.root)
        problems.append(Problem("error", path.parent.name, f"{shown} links outside the dataset root; refused."))

    rows = []
    clips_with_any: set[int] = set()
    with progress_bar(progress) as bar:
        for name, source in layout.modalities.items():
            task = bar.add_task(f"validate {name}", total=None)
            scan = _scan_modality(source, layout.root, problems, bar, task)
            lengths = np.array(list(scan["lengths"].values()) or [0])
            ids = set(scan["lengths"])
            clips_with_any |= ids
            # With an unreadable split CSV every id would look unknown: say nothing rather than noise.
            unknown = sorted(ids - all_ids) if splits and len(splits) == len(layout.split_files) else []
            if unknown:
                problems.append(
                    Problem("warning", name, f"{len(unknown)} file(s) for ids in no split: {shortlist(unknown)}.")
                )
            row = {
                "modality": name,
                "files": len(scan["lengths"]),
                "width": scan["width"],
                "dtype": ",".join(sorted(scan["dtypes"])),
                "min T": int(lengths.min()),
                "median T": float(np.median(lengths)),
                "max T": int(lengths.max()),
            }
            for split, frame in splits.items():
                row[f"no {split}"] = int((~frame.index.isin(list(ids))).sum())
            if ids and len(splits.get("train", ())) and row["no train"] == len(splits["train"]):
                problems.append(Problem("warning", name, untrainable_sentence(name, len(splits["train"]))))
            rows.append(row)
    train_clips = len(splits["train"]) if "train" in splits else None
    trainable = {row["modality"]: row["width"] for row in rows  # as train leaves out what no training clip has
                 if row["width"] is not None and (train_clips is None or row["no train"] < train_clips)}
    _check_feature_names(layout, trainable, problems)
    split_rows = []
    for split, frame in splits.items():
        bare = frame.index[~frame.index.isin(list(clips_with_any))]
        without = len(bare)
        labelled = bool(np.isfinite(frame.to_numpy(dtype=float)).all()) and len(frame) > 0
        split_rows.append({"split": split, "clips": len(frame), "labelled": labelled, "without any modality": without})
        constant = (constant_labels_sentence(frame, root=layout.root, split=split, scored=split != "train")
                    if split != "test" else None)
        if constant and not (split == "valid" and len(constant_emotions(frame)) == len(EMOTIONS)):  # refused above
            problems.append(Problem("warning", f"{split}_split", constant))
        if split == "valid" and without == len(frame) > 0:  # no PCC to select on; validate knows no train.selection
            problems.append(Problem("warning", f"{split}_split",
                                    featureless_valid_sentence(without, "a feature file", way_out=_SELECTION_WAY_OUT)))
        elif without:
            severity = "error" if split == "train" and without == len(frame) else "warning"
            problems.append(
                Problem(severity, f"{split}_split",
                        f"{without} clip(s) have no feature file at all: {shortlist(bare)}.")
            )
    return ValidationReport(layout.root, pd.DataFrame(split_rows), pd.DataFrame(rows), problems)
