"""Notebook-friendly access to a dataset root and the torch Dataset the model trains on.

``open_dataset(root)`` gives the splits (labels as pandas), the modalities and the packed
:class:`~emimic.data.store.FeatureStore`. :class:`ClipDataset` turns a list of clip ids into
batches with per-modality masks; it implements ``__getitems__`` so a DataLoader fetches a
whole batch with one vectorised read instead of one Python call per clip.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from emimic.data.holdout import resolve_valid_split
from emimic.data.layout import SPLIT_FILES, DatasetLayout, discover
from emimic.data.store import FeatureStore, locate_store, pack, stale_modalities
from emimic.errors import DataError
from emimic.labels import EMOTIONS, describe_ids, read_meta, read_split

STD_FLOOR = 1e-6


class VidmimicDataset:
    """A discovered dataset root: its splits, modalities and feature store.

    The test split's labels are treated as absent unless ``test_labels=True`` (published test
    CSVs often carry six columns of 0.0 as placeholders).

    Example::

        ds = open_dataset("data/sim")
        ds.splits["train"].head()     # labels indexed by integer Filename
        ds.coverage()                 # share of clips of each split that have each modality
        x = ds.store().pooled("vit", ds.splits["valid"].index)
    """

    def __init__(self, layout: DatasetLayout, *, test_labels: bool = False, store_dir: str | Path | None = None):
        self.layout = layout
        self.root = layout.root
        self._store_dir = Path(store_dir) if store_dir is not None else None
        self.splits: dict[str, pd.DataFrame] = {}
        for split, path in layout.split_files.items():
            labelled = split != "test" or test_labels
            frame = read_split(path, require_labels=labelled and split != "test")
            if not labelled:
                frame.loc[:, list(EMOTIONS)] = np.nan
            self.splits[split] = frame
        self._store: FeatureStore | None = None

    @property
    def store_dir(self) -> Path:
        """The given store folder, else the one :func:`~emimic.data.store.locate_store` picks (in the
        root when it is writable, in the cache when not), decided on first use."""
        if self._store_dir is None:
            self._store_dir = locate_store(self.layout)
        return self._store_dir

    @property
    def modalities(self) -> list[str]:
        return sorted(self.layout.modalities)

    def has_labels(self, split: str) -> bool:
        frame = self.split(split)
        return bool(len(frame)) and bool(np.isfinite(frame.to_numpy(dtype=float)).all())

    def split(self, name: str) -> pd.DataFrame:
        if name not in self.splits:
            raise DataError(f"{self.root}: no {name!r} split (found {sorted(self.splits)}).")
        return self.splits[name]

    def check_disjoint(self, first: str, second: str) -> None:
        """Refuse clips listed in both splits: selecting a model on clips it trained on inflates its score."""
        shared = np.intersect1d(self.split(first).index, self.split(second).index)
        if len(shared):
            files = " and ".join(self.layout.split_files[s].name for s in (first, second))
            raise DataError(
                f"{self.root}: clips {describe_ids(shared)} are in both {files}; a clip may be in one split only"
                f" (run `emimic validate {self.root}` to list every problem)."
            )

    def store(self, *, dtype: str | None = None, progress: bool = True) -> FeatureStore:
        """The packed feature store, (re)packed first when any modality changed on disk.

        ``dtype=None`` keeps the store's own frame dtype (a float16 store stays float16).
        """
        if self._store is None:
            actions = stale_modalities(self.layout, self.store_dir, dtype)
            if any(action != "unchanged" for action in actions.values()):
                pack(self.root, dtype=dtype, store_dir=self.store_dir, progress=progress)
            self._store = FeatureStore.open(self.store_dir)
        return self._store

    def meta(self) -> pd.DataFrame:
        """The split CSVs' optional columns (groups, rater counts) of every clip, indexed by Filename."""
        frames = [read_meta(path) for path in self.layout.split_files.values()]
        return pd.concat(frames) if frames else pd.DataFrame()

    def coverage(self) -> pd.DataFrame:
        """Fraction of each split's clips that have each modality (rows: splits, columns: modalities)."""
        table = {
            split: {m: float(np.isin(frame.index, self.layout.modalities[m].ids).mean()) for m in self.modalities}
            for split, frame in self.splits.items()
        }
        return pd.DataFrame(table).T


def open_dataset(
    root: str | Path, *, test_labels: bool = False, store_dir: str | Path | None = None
) -> VidmimicDataset:
    """Discover ``root`` (Hume-Vidmimic2 layout) and read its split CSVs."""
    layout = discover(root)
    if not layout.split_files:
        expected = ", ".join(names[0] for names in SPLIT_FILES.values())
        raise DataError(f"{layout.root}: no split CSV found (expected {expected}).")
    return VidmimicDataset(layout, test_labels=test_labels, store_dir=store_dir)


def with_valid_split(ds: VidmimicDataset, valid_fraction: float | None) -> VidmimicDataset:
    """``ds`` as training sees it: unchanged when it has a valid split, else a copy with part of train held out.

    Refuses, with the sentence ``emimic validate`` prints, a corpus without a valid split when no
    ``valid_fraction`` is given (see :mod:`emimic.data.holdout`).
    """
    splits = resolve_valid_split(ds.splits, valid_fraction, root=ds.root)
    if "valid" in ds.splits:
        return ds
    held = copy.copy(ds)  # shares the layout and the store; only the split table differs
    held.splits = splits
    return held


@dataclass(frozen=True)
class ModalityStats:
    """Normalisation statistics of one modality over a set of (training) clips."""

    pooled_mean: np.ndarray  # (4*D,)
    pooled_std: np.ndarray  # (4*D,)
    frame_mean: np.ndarray  # (D,)
    frame_std: np.ndarray  # (D,)


def feature_statistics(
    store: FeatureStore, ids: Sequence[int] | np.ndarray, modalities: Sequence[str]
) -> dict[str, ModalityStats]:
    """Per-modality statistics over the clips of ``ids`` that have the modality.

    Frame statistics are derived exactly from the pooled per-clip mean and std, weighted by
    clip length, so no frame is read. A modality absent from every clip gets zero mean and unit
    std (the model then only learns its missing embedding).
    """
    stats = {}
    for modality in modalities:
        dim = store.dim(modality)
        present = store.present(modality, ids)
        chosen = np.asarray(ids)[present]
        if len(chosen) == 0:
            zeros, ones = np.zeros(dim, np.float32), np.ones(dim, np.float32)
            stats[modality] = ModalityStats(np.tile(zeros, 4), np.tile(ones, 4), zeros, ones)
            continue
        pooled = store.pooled(modality, chosen).astype(np.float64)
        weights = store.lengths(modality, chosen).astype(np.float64)
        weights /= weights.sum()
        clip_mean, clip_std = pooled[:, :dim], pooled[:, dim : 2 * dim]
        frame_mean = weights @ clip_mean
        frame_var = weights @ (clip_std**2 + clip_mean**2) - frame_mean**2
        stats[modality] = ModalityStats(
            pooled_mean=pooled.mean(0).astype(np.float32),
            pooled_std=np.maximum(pooled.std(0), STD_FLOOR).astype(np.float32),
            frame_mean=frame_mean.astype(np.float32),
            frame_std=np.sqrt(np.maximum(frame_var, STD_FLOOR**2)).astype(np.float32),
        )
    return stats


def _frame_indices(length: int, max_frames: int) -> np.ndarray:
    """Every frame when the clip is short enough, else ``max_frames`` evenly spaced ones (deterministic)."""
    if length <= max_frames:
        return np.arange(length)
    return np.linspace(0, length - 1, max_frames).round().astype(np.int64)


class ClipDataset(Dataset):
    """Clips of one split as model inputs.

    Each item (and each batch, through ``__getitems__``) is a dict::

        {"ids": (B,), "targets": (B, 6), "weights": (B,) clip weights of the loss (1 unless given),
         "inputs": {modality: {"pooled": (B, 4*D), "present": (B,), "lengths": (B,),
                               "frames": (B, T, D)  # only with sequences=True}}}

    Pooled statistics of the dataset's clips are read into memory once; frames stay
    memory-mapped and are read per batch.
    """

    def __init__(
        self,
        store: FeatureStore,
        ids: Sequence[int] | np.ndarray,
        targets: np.ndarray | None = None,
        *,
        modalities: Sequence[str],
        sequences: bool = False,
        max_frames: int = 512,
        weights: np.ndarray | None = None,
    ):
        self.store = store
        self.ids = np.asarray(ids, dtype=np.int64)
        if targets is not None and targets.shape != (len(self.ids), len(EMOTIONS)):
            raise ValueError(f"targets must have shape {(len(self.ids), len(EMOTIONS))}, got {targets.shape}")
        if targets is None:
            targets = np.zeros((len(self.ids), len(EMOTIONS)), dtype=np.float32)
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        self.weights = torch.ones(len(self.ids)) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.modalities = list(modalities)
        self.sequences = sequences
        self.max_frames = max_frames
        self._pooled = {m: torch.from_numpy(store.pooled(m, self.ids)) for m in self.modalities}
        self._present = {m: torch.from_numpy(store.present(m, self.ids)) for m in self.modalities}
        self._lengths = {m: torch.from_numpy(store.lengths(m, self.ids)) for m in self.modalities}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> dict:
        rows = torch.as_tensor(indices, dtype=torch.long)
        inputs = {}
        for m in self.modalities:
            entry = {
                "pooled": self._pooled[m][rows],
                "present": self._present[m][rows],
                "lengths": self._lengths[m][rows].clamp(max=self.max_frames),
            }
            if self.sequences:
                entry["frames"] = self._frames(m, rows)
            inputs[m] = entry
        return {"ids": torch.from_numpy(self.ids[rows.numpy()]), "targets": self.targets[rows],
                "weights": self.weights[rows], "inputs": inputs}

    def _frames(self, modality: str, rows: torch.Tensor) -> torch.Tensor:
        lengths = self._lengths[modality][rows].clamp(max=self.max_frames)
        batch = torch.zeros(len(rows), max(int(lengths.max()), 1), self.store.dim(modality))
        for slot, row in enumerate(rows.tolist()):
            if not self._present[modality][row]:
                continue
            frames = self.store.frames(modality, int(self.ids[row]))
            picked = frames[_frame_indices(len(frames), self.max_frames)]
            batch[slot, : len(picked)] = torch.from_numpy(picked)
        return batch


def collate_clips(batch: dict) -> dict:
    """Collate function for a DataLoader over :class:`ClipDataset`: batches arrive already assembled."""
    return batch
