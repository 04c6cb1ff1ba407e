"""Notebook-friendly access to a dataset root and the torch Dataset the model trains on.

``open_dataset(root)`` gives the splits (labels as pandas), the modalities and the packed
:class:`~emimic.data.store.FeatureStore`. :class:`ClipDataset` turns a list of clip ids into
batches with per-modality masks; it implements ``__getitems__`` so a DataLoader fetches a
whole batch with one vectorised read instead of one Python call per clip.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from emimic.data.holdout import resolve_valid_split
from emimic.data.layout import SPLIT_FILES, DatasetLayout, discover
from emimic.data.store import (
    FeatureStore,
    check_store_place,
    constant_columns,
    locate_store,
    pack,
    stale_modalities,
)
from emimic.errors import DataError
from emimic.labels import EMOTIONS, empty_split_sentence, read_meta, read_split, shortlist, view_prefix

CACHE_BLOCK = 256  # clips whose frames chunked_steps copies out of the memory map at once


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

    held_out_fraction: float | None = None  # set on the copy with_valid_split makes by holding out part of train
    held_out_by: str | None = None  # the group column whose whole groups that copy holds out, if train has one
    view: str = ""  # what a copy with other splits is (a CV fold: "fold 2"), named with its splits in messages

    def __init__(self, layout: DatasetLayout, *, test_labels: bool = False, store_dir: str | Path | None = None):
        self.layout = layout
        self.root = layout.root
        if store_dir is not None:
            check_store_place(layout.root, store_dir)
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

    def split_sizes(self) -> dict[str, int]:
        """The number of clips of each split (of this copy: with a share of train held out, if it holds one out)."""
        return {split: len(frame) for split, frame in self.splits.items()}

    def has_labels(self, split: str) -> bool:
        frame = self.split(split)
        return bool(len(frame)) and bool(np.isfinite(frame.to_numpy(dtype=float)).all())

    def split(self, name: str) -> pd.DataFrame:
        if name not in self.splits:
            raise DataError(f"{self.root}: no {name!r} split (found {sorted(self.splits)}).")
        return self.splits[name]

    @property
    def where(self) -> str:
        """What a message about the clips of this view begins with (:func:`emimic.labels.view_prefix`)."""
        return view_prefix(self.view)

    def clips(self, name: str) -> pd.DataFrame:
        """The split ``name`` for a command that works on its clips: one whose CSV lists none is refused."""
        frame = self.split(name)
        if frame.empty:
            raise DataError(empty_split_sentence(self.layout.split_files.get(name, self.root)))
        return frame

    def check_disjoint(self, first: str, second: str) -> None:
        """Refuse clips listed in both splits: selecting a model on clips it trained on inflates its score."""
        shared = np.intersect1d(self.split(first).index, self.split(second).index)
        if len(shared):
            files = " and ".join(self.layout.split_files[s].name for s in (first, second))
            raise DataError(
                f"{self.root}: clips {shortlist(shared)} are in both {files}; a clip may be in one split only."
            )

    def store(self, *, dtype: str | None = None, progress: bool = True,
              needed: Collection[str] | None = None) -> FeatureStore:
        """The packed feature store, (re)packed first when any modality changed on disk.

        ``dtype=None`` keeps the store's own frame dtype (a float16 store stays float16). A modality an extract is
        writing now is refused if ``needed`` names it (``None``: every modality is needed), else left as it was
        packed, after a warning (see :func:`~emimic.data.store.pack`).
        """
        if self._store is None:
            actions = stale_modalities(self.layout, self.store_dir, dtype)
            if any(action != "unchanged" for action in actions.values()):
                pack(self.root, dtype=dtype, store_dir=self.store_dir, progress=progress, needed=needed)
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
    if valid_fraction is not None and ds.held_out_fraction == valid_fraction:
        return ds  # held out already (sweep and the train() it calls both ask): never held out twice
    splits, grouped_by = resolve_valid_split(ds.splits, valid_fraction, root=ds.root,
                                             split_files=ds.layout.split_files)
    if "valid" in ds.splits:
        return ds
    held = copy.copy(ds)  # shares the layout and the store; only the split table differs
    held.splits = splits
    held.held_out_fraction = valid_fraction
    held.held_out_by = grouped_by
    return held


@dataclass(frozen=True)
class ModalityStats:
    """Normalisation statistics of one modality over a set of (training) clips."""

    pooled_mean: np.ndarray  # (4*D,)
    pooled_std: np.ndarray  # (4*D,)
    frame_mean: np.ndarray  # (D,)
    frame_std: np.ndarray  # (D,)


def column_scales(std: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The float32 divisor that standardises columns of standard deviation ``std`` and mean ``mean``: ``std``, or,
    for a column constant over the training clips, the median scale of the other columns (1 if all are constant).
    A constant column's training values standardise to 0 whatever it is divided by; this divisor keeps another
    clip's deviation there on the scale of the other inputs (dividing by 1 gave inputs of 1e9 on 1e9-scale
    features; a fixed small floor erased features of a small scale and blew up the rest)."""
    constant = constant_columns(std, mean)
    typical = float(np.median(std[~constant])) if not constant.all() else 1.0
    return np.where(constant, typical, std).astype(np.float32)


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
            pooled_std=column_scales(pooled.std(0), pooled.mean(0)),
            frame_mean=frame_mean.astype(np.float32),
            frame_std=column_scales(np.sqrt(np.maximum(frame_var, 0.0)), frame_mean),
        )
    return stats


def chunk_bounds(lengths: np.ndarray, max_steps: int) -> np.ndarray:
    """For every frame of the clips (concatenated in order), the index of the step it falls in.

    A clip keeps ``min(length, max_steps)`` steps: a longer one is cut into ``max_steps``
    contiguous chunks of near-equal length, every frame in exactly one chunk.
    """
    steps = np.minimum(lengths, max_steps)
    clip = np.repeat(np.arange(len(lengths)), lengths)
    frame = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(np.cumsum(steps) - steps, lengths) + (frame * steps[clip]) // np.maximum(lengths[clip], 1)


def packed_rows(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Row indices ``starts[0] .. starts[0] + lengths[0] - 1, starts[1] ..``: the spans of the clips, concatenated."""
    begin = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum())) + np.repeat(starts - begin, lengths)


def gather_frames(frames: np.ndarray, starts: np.ndarray, lengths: np.ndarray, max_steps: int) -> torch.Tensor:
    """``(sum of min(length, max_steps), D)`` float32: the steps of the clips whose frames are
    ``frames[starts[i] : starts[i] + lengths[i]]``, concatenated (packed, no padding), read from the
    memory map at once with no Python loop over clips.

    A clip longer than ``max_steps`` becomes the means of ``max_steps`` contiguous chunks: unlike even
    subsampling, which can step over a short burst, every frame counts, so a time-localised peak
    survives (smoothed over one chunk) at its place in the clip.
    """
    data = torch.from_numpy(np.asarray(np.asarray(frames)[packed_rows(starts, lengths)], dtype=np.float32))
    if lengths.max(initial=0) <= max_steps:
        return data
    step = torch.from_numpy(chunk_bounds(lengths, max_steps))
    total = int(np.minimum(lengths, max_steps).sum())
    counts = torch.zeros(total).index_add_(0, step, torch.ones(len(step)))
    return torch.zeros(total, data.shape[1]).index_add_(0, step, data).div_(counts[:, None])


def chunked_steps(frames: np.ndarray, starts: np.ndarray, lengths: np.ndarray, max_steps: int) -> torch.Tensor:
    """:func:`gather_frames` of all the clips, computed ``CACHE_BLOCK`` clips at a time (so only one block's
    frames are ever copied out of the memory map) and kept in the store's dtype: a float16 store gives a
    float16 cache, never larger than the frames it summarises."""
    dtype = torch.float16 if frames.dtype == np.float16 else torch.float32
    blocks = [gather_frames(frames, starts[i : i + CACHE_BLOCK], lengths[i : i + CACHE_BLOCK], max_steps).to(dtype)
              for i in range(0, len(lengths), CACHE_BLOCK)]
    return torch.cat(blocks) if blocks else torch.zeros(0, frames.shape[1], dtype=dtype)


def process_share(size: int, seed: int, *, rank: int = 0, replicas: int = 1) -> np.ndarray:
    """Positions (sorted) of the clips, out of ``size``, that process ``rank`` of ``replicas`` trains on for the
    whole run: a partition seeded by ``seed`` alone, into shares whose sizes differ by at most one. Fixed
    shares let each process read (and cache the frames of) its own clips only; one process gets them all."""
    if replicas == 1:
        return np.arange(size)
    return np.sort(np.random.default_rng([seed, replicas]).permutation(size)[rank::replicas])


class EpochShuffle(Sampler[int]):
    """Random order that depends only on (seed, epoch): Lightning calls ``set_epoch`` every epoch.

    ``per_epoch`` (default: all) clips are drawn each epoch: under DDP every process draws as many,
    the smallest share's size (see :func:`process_share`), so every process takes the same number of
    steps; a larger share leaves out another random clip each epoch.
    """

    def __init__(self, size: int, seed: int, *, per_epoch: int | None = None):
        self.size, self.seed, self.epoch = size, seed, 0
        self.per_epoch = size if per_epoch is None else per_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def order(self, generator: torch.Generator) -> np.ndarray:
        """This epoch's clips in random order, drawn from ``generator``."""
        return torch.randperm(self.size, generator=generator).numpy()[: self.per_epoch]

    def __iter__(self) -> Iterator[int]:
        yield from self.order(self.generator()).tolist()  # lazily, for the reason LengthBuckets.__iter__ gives

    def __len__(self) -> int:
        return self.per_epoch


class LengthBuckets(Sampler[list[int]]):
    """Batches of clips of similar length, so a batch of sequences is padded little; seeded by (seed, epoch).

    Every epoch the clips are shuffled (:class:`EpochShuffle`, whose epoch Lightning sets), with
    ``drop_last`` the remainder of that random order is left out, and each pool of ``pool`` batches is
    sorted by length with a random jitter of about ``jitter`` (relative), so the batches' make-up changes
    from epoch to epoch, then cut into batches, which are served in random order. Without
    ``drop_last`` every clip drawn is in exactly one batch per epoch; ``per_epoch`` clips are drawn (see
    :class:`EpochShuffle`).
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, *, drop_last: bool = False,
                 pool: int = 16, jitter: float = 0.2, per_epoch: int | None = None):
        self.lengths = np.asarray(lengths, dtype=np.float64)
        self.batch_size, self.drop_last, self.pool, self.jitter = batch_size, drop_last, pool, jitter
        self.sampler = EpochShuffle(len(self.lengths), seed, per_epoch=per_epoch)

    def __iter__(self) -> Iterator[list[int]]:
        # A generator: the order is drawn at the first batch, not when iter() is called. Lightning calls iter() on a
        # resumed run's loader before set_epoch, so an eager order was epoch 0's, not the resumed epoch's.
        generator = self.sampler.generator()
        order = self.sampler.order(generator)
        if self.drop_last:
            order = order[: len(order) - len(order) % self.batch_size]
        noise = torch.empty(len(self.lengths), dtype=torch.float64).uniform_(-self.jitter, self.jitter,
                                                                              generator=generator).numpy()
        key = np.log1p(self.lengths) + noise
        batches: list[np.ndarray] = []
        width = self.batch_size * self.pool
        for start in range(0, len(order), width):
            chunk = order[start : start + width]
            chunk = chunk[np.argsort(key[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        for i in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[i].tolist()

    def __len__(self) -> int:
        n, size = len(self.sampler), self.batch_size
        return n // size if self.drop_last else -(-n // size)


class ClipDataset(Dataset):
    """Clips of one split as model inputs.

    Each item (and each batch, through ``__getitems__``) is a dict::

        {"ids": (B,), "targets": (B, 6), "weights": (B,) clip weights of the loss (1 unless given),
         "inputs": {modality: {"pooled": (B, 4*D), "present": (B,), "lengths": (B,),
                               "frames": (sum(lengths), D)  # only with sequences=True}}}

    ``frames`` is packed: the steps of the batch's clips concatenated in batch order, clip ``i``
    contributing ``lengths[i]`` of them (0 when absent); the sequence encoders pad them only after
    projecting them to their (much smaller) width.

    Pooled statistics of the dataset's clips are read into memory once. With ``sequences=True`` so
    are their steps: every clip's frames, a clip longer than ``max_frames`` reduced to ``max_frames``
    chunk means (:func:`chunked_steps`), are computed once when the dataset is built, not once per
    epoch, and a batch is then one ``index_select`` of that cache. The cache holds
    ``min(length, max_frames)`` steps per clip in the store's dtype, so it is never larger than the
    frames of the dataset's clips in the store.
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
        spans = {m: store.spans(m, self.ids) for m in self.modalities}
        self._lengths = {m: torch.from_numpy(length) for m, (_, length) in spans.items()}
        self._steps: dict[str, torch.Tensor] = {}
        self._step_starts: dict[str, np.ndarray] = {}
        if sequences:
            for m, (start, length) in spans.items():
                self._steps[m] = chunked_steps(store.frame_rows(m), start, length, max_frames)
                steps = np.minimum(length, max_frames)
                self._step_starts[m] = np.cumsum(steps) - steps

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
        picked = rows.numpy()
        steps = self._lengths[modality].numpy()[picked].clip(max=self.max_frames)
        index = torch.from_numpy(packed_rows(self._step_starts[modality][picked], steps))
        return self._steps[modality].index_select(0, index).float()

    def sequence_lengths(self) -> np.ndarray:
        """``(N,)`` steps each clip contributes to a batch of sequences (summed over modalities): the
        length :class:`LengthBuckets` sorts by."""
        return sum((self._lengths[m].clamp(max=self.max_frames).numpy() for m in self.modalities),
                   np.zeros(len(self.ids), dtype=np.int64))


def collate_clips(batch: dict) -> dict:
    """Collate function for a DataLoader over :class:`ClipDataset`: batches arrive already assembled."""
    return batch
