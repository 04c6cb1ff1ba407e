"""FeatureStore: every modality of a dataset packed into memory-mapped arrays.

Reading 30k small pickles takes minutes; a packed store opens in milliseconds. Per modality the
store keeps the frames of all clips concatenated in one raw array (float32 or float16), the
clip ids, offsets and lengths, and per-clip pooled statistics ``[mean, std, min, max]`` (always
float32, computed before any float16 rounding). ``manifest.json`` records shapes, dtypes and a
fingerprint of the source files and, where an extractor recorded them, the feature (column) names;
a per-modality ``sources.csv`` keeps each file's checksum.

Layout under ``<root>/.emimic/store`` (or any ``store_dir``)::

    manifest.json
    <modality>-<token>/frames.bin  ids.npy  offsets.npy  lengths.npy  pooled.npy  sources.csv

A read-only root (licensed data usually is) gets its store in the cache instead,
``$EMIMIC_CACHE`` or ``$XDG_CACHE_HOME/emimic`` or ``~/.cache/emimic``, under ``stores/<root
name>-<hash of its path>``: :func:`locate_store` finds it again, so no flag is needed.

Writes are atomic: a modality is packed into a temporary folder, renamed into place, and only
then recorded in the manifest (the commit point), one modality at a time. A killed pack leaves
the previous store intact plus every modality it finished; the next pack removes its temporary
folder and resumes with the modalities still to do. One command packs a store at a time (a lock beside it, see
:func:`store_hold`): another one waits for it, then reuses what it packed; a store is opened under the same lock, shared
with other commands that open it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emimic.data.layout import DatasetLayout, ModalitySource, discover, duplicate_sentence, read_mapping, unread
from emimic.defaults import CACHE_ENV, LOCK_WAIT_SECONDS, STORE_DTYPES
from emimic.errors import DataError, EmimicWarning, EmptyFeatures, Interrupted, OutputConflict
from emimic.io import (
    TEMP_SUFFIX,
    decode_frames,
    float32_rounds,
    frame_array,
    remove_leftovers,
    single_precision,
    write_failure,
    write_text,
)
from emimic.labels import shortlist
from emimic.outputs import (
    Hold,
    exclusive_outputs,
    flock_available,
    held_by_others,
    missing_folders,
    remove_empty,
)
from emimic.progress import progress_bar

STORE_VERSION = 1
POOLED_STATS: tuple[str, ...] = ("mean", "std", "min", "max")
DTYPES = STORE_DTYPES
FLOAT16_MAX = float(np.finfo(np.float16).max)
# A column is refused when the standard deviation of the errors a rounding cast makes in it over all clips exceeds this
# share of the column's own (the errors add more than 1 % to its variance): what the model sees of a feature is its
# variation (features are standardised), so such a rounding harms it (float16 turns a 1e-9 feature into 0; float32,
# which emimic computes in, turns a float64 feature varying by 0.3 around 1e8 into steps of 8), while many tiny values
# float16 keeps well enough (a probability near 0 in most frames) or an offset common to all values (a constant
# column) do not. Ordinary features lose about 0.02 % to float16; the simulated text embedding, whose columns vary
# little around their means, up to 2.6 %.
MAX_ROUNDING_ERROR_SHARE = 0.1
ROUNDING_HARM_BLOCK_BYTES = 1 << 18  # the float64 rows RoundingHarm.add works on at once (see there why)
# A column counts as constant when its standard deviation is within float32 rounding of its mean (1 ulp), or is
# below the smallest normal float32: relative, so features of any scale (1e-9 or 1e9) keep their variation.
CONSTANT_RELATIVE_STD = float(np.finfo(np.float32).eps)
TINY_STD = float(np.finfo(np.float32).tiny)
# A float64 column whose values spread by no more than float64 arithmetic noise of their mean (a norm beside an
# L2-normalised embedding, a sum of probabilities, a rate computed as n / duration: one value but for its last bits)
# holds nothing float32 could round away, though it rounds all of it: 1e4 float64 steps (2e-12 of the mean) is far
# above that noise (1e-16) and far below what a real feature varies by (0.3 around 1e8 is 3e-9).
NOISE_RELATIVE_STD = 1e4 * float(np.finfo(np.float64).eps)


# The folder name of a packed modality: <modality>-<12 hex of its source fingerprint>-<dtype>.
_MODALITY_DIR = re.compile(rf"-[0-9a-f]{{12}}-({'|'.join(DTYPES)})$")


# emimic's own folder inside a dataset root; it holds the store.
EMIMIC_DIR = ".emimic"


def default_store_dir(root: Path) -> Path:
    """The store's place inside a dataset root (used whenever the root is writable)."""
    return root / EMIMIC_DIR / "store"


def check_store_place(root: Path, store_dir: str | Path) -> None:
    """Refuse a store folder given inside the dataset ``root`` in a folder discovery reads (any but those it passes
    over, :func:`~emimic.data.layout.unread`: ``.emimic``, ``_store``), as :class:`OutputConflict`: its folders and
    manifest would be read as a modality, and every later command would fail on them."""
    given, resolved_root = Path(store_dir), Path(root).expanduser().resolve()
    store = given.expanduser().resolve()
    if not store.is_relative_to(resolved_root):
        return
    parts = store.relative_to(resolved_root).parts
    if not parts or not unread(parts[0]):
        raise OutputConflict(f"{given}: the feature store would lie inside the dataset root {resolved_root}, whose"
                             " every folder is read as data but those whose names begin with '.' or '_'; pass a"
                             " --store DIR outside it or in such a folder, or none (the store then lives in"
                             f" {default_store_dir(resolved_root)}).")


def cache_dir() -> Path:
    """emimic's cache folder: ``$EMIMIC_CACHE``, else ``$XDG_CACHE_HOME/emimic``, else ``~/.cache/emimic``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "emimic"


def cache_store_dir(root: Path) -> Path:
    """The cache folder holding the store of a read-only ``root``, keyed by the root's resolved path."""
    resolved = Path(root).expanduser().resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    return cache_dir() / "stores" / f"{resolved.name}-{key}"


def writable(folder: Path) -> bool:
    """Whether ``folder`` can be created and written to. Tried, not inferred from permission bits,
    which neither stop root nor reveal a read-only mount."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return write_failure(folder) is None


def locate_store(layout: DatasetLayout) -> Path:
    """Where the store of a dataset lives when no ``store_dir`` is given.

    Inside the root when the root is writable, or when it already holds a current store (packed
    before the root was made read-only); in the cache (:func:`cache_store_dir`) otherwise.
    """
    in_root = default_store_dir(layout.root)
    if writable(in_root):
        return in_root
    current = _read_manifest(in_root) is not None and set(stale_modalities(layout, in_root).values()) == {"unchanged"}
    return in_root if current else cache_store_dir(layout.root)


def _fingerprint_digest(source: ModalitySource) -> str:
    rows = source.fingerprint()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def pool_frames(frames: np.ndarray) -> np.ndarray:
    """``[mean, std, min, max]`` over the frame axis of a ``(T, D)`` array, as one ``4*D`` vector.

    Sums in float64 over one float64 array of the clip's size (its deviations from the mean). The former float64
    copy of the clip plus ``std``'s own deviations made two: more memory traffic, and, freed together at the top
    of the heap, more than glibc keeps there (its trim threshold), so in some processes (depending on what else
    they had allocated: pandas imported or not) every clip gave the pages back and faulted them in again: 0.9 to
    3.5 ms a 300x1024 clip, now 0.55 ms in any (benchmarks/bench_store.py measures both ways).
    """
    mean = frames.mean(0, dtype=np.float64)  # cast a buffer at a time, not the whole clip
    deviations = np.subtract(frames, mean, dtype=np.float64)
    std = np.sqrt(np.einsum("ij,ij->j", deviations, deviations) / len(frames))
    return np.concatenate([mean, std, frames.min(0), frames.max(0)]).astype(np.float32)


Clip = tuple[int, str, np.ndarray | None, str]


def _clips(source: ModalitySource) -> tuple[list[int], Callable[[int], Clip]]:
    """The clip ids of a modality in id order and a reader of one clip: ``(clip id, file name, frames, checksum)``;
    ``frames`` keep the file's dtype (:func:`~emimic.io.frame_array`), and are None for a file that holds zero frames
    (masked like a missing file)."""
    if source.container is not None:
        data = source.container.read_bytes()
        checksum = hashlib.blake2b(data, digest_size=16).hexdigest()
        mapping = read_mapping(source.container)

        def from_container(clip_id: int) -> Clip:
            try:
                frames = frame_array(mapping[clip_id], source=_clip_source(source, "", clip_id))
            except EmptyFeatures:
                frames = None
            return clip_id, source.container.name, frames, checksum

        return sorted(mapping), from_container

    def from_file(clip_id: int) -> Clip:
        path = source.path / source.names[clip_id]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc.strerror}).") from None
        try:
            frames = decode_frames(data, path.suffix, source=str(path))
        except EmptyFeatures:
            frames = None
        return clip_id, path.name, frames, hashlib.blake2b(data, digest_size=16).hexdigest()

    return sorted(source.names), from_file


def _readable_widths(clip_ids: Sequence[int], read_clip: Callable[[int], Clip], advance: Callable[[], None]
                     ) -> dict[int, int]:
    """``{clip id: width}`` of the ``clip_ids`` that read, skipping the others: which width is the odd one decides the
    error pack raises, and a later broken clip must not raise its own error instead (its turn comes once the widths
    agree). ``advance`` is called once per clip, as the scan of a large corpus takes a while."""
    widths = {}
    for clip_id in clip_ids:
        advance()
        try:
            frames = read_clip(clip_id)[2]
        except DataError:
            continue
        if frames is not None:
            widths[clip_id] = frames.shape[1]
    return widths


def no_frames_sentence(path: Path | str, modality: str) -> str:
    """What ``pack`` and ``validate`` say of a modality whose every file holds zero frames: nothing to learn from."""
    return (f"{path}: no clip of modality {modality!r} holds any frame; delete the folder, or extract it again if"
            " that was not expected.")


def untrainable_sentence(modality: str, train_clips: int, *,
                         way_out: str = "train leaves it out; add its features for training clips to use it") -> str:
    """What ``validate`` and ``train`` say of a modality that no training clip has (train leaves it out: a branch fed
    only in valid or test would never learn, and its untrained encoder would add noise to those clips)."""
    return (f"modality {modality!r} has no file for any of the {train_clips} training clips, so no branch can learn"
            f" from it: {way_out}.")


# What a user can do about a valid split without features, by where it comes from.
VALID_FEATURES_WAY_OUT = "add their features, or validate on clips that have some"


def featureless_valid_sentence(clips: int, what: str, *, where: str = "", way_out: str = VALID_FEATURES_WAY_OUT
                               ) -> str:
    """What ``validate`` and ``train`` say of a valid split none of whose clips has ``what`` (a feature file, or one of
    the modalities the model reads): every clip would get the one prediction of no input, so nothing can be selected
    (``where``: what trains on these clips, e.g. a CV fold, to begin the sentence with; ``way_out``: what the user
    can do there)."""
    return (f"{where}none of the {clips} clips of the 'valid' split has {what}, so the model would predict one value"
            f" for all of them and no PCC exists to select the best epoch on; {way_out}.")


def _check_float16_range(frames: np.ndarray, where: str) -> None:
    """Refuse frames that float16 would turn into Inf (its largest value is 65504): the model would learn NaN. Tiny
    values are judged per column over all clips (:class:`RoundingHarm`), by the harm their rounding does."""
    peak = float(np.abs(frames).max())
    if peak > FLOAT16_MAX:
        raise DataError(f"{where}: holds values up to {peak:.3g}, beyond the float16 range (±{FLOAT16_MAX:.0f});"
                        " pack this dataset with --dtype float32.")


def constant_columns(std: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Which columns of standard deviation ``std`` and mean ``mean`` training treats as constant (standardised to 0):
    those whose spread is within float32 rounding of their mean, or below the smallest float32 normal."""
    return std <= np.maximum(CONSTANT_RELATIVE_STD * np.abs(mean), TINY_STD)


@dataclass(frozen=True)
class Rounding:
    """A cast that rounds a modality's features on their way into the store, and how a refusal of the columns it
    harms words it (see :class:`RoundingHarm`)."""

    subject: str  # what rounds, as a refusal begins
    kept: str  # what passes, as its limit says
    remedy: str  # what a user can do about a harmed column
    # Whether a column training treats as constant (constant_columns of the values before the cast) is spared: it is
    # standardised to 0 whatever float16 makes of it; but the float32 values are what training judges constant, so
    # a float64 column that varies below float32's steps of its mean is exactly what that cast harms.
    spares_constant: bool


FLOAT32_ROUNDING = Rounding(
    "float32, the precision emimic computes in,", "accepted",
    "subtract each such column's offset (its mean over all clips, say) or rescale it before saving the features",
    spares_constant=False)
FLOAT16_ROUNDING = Rounding("float16", "kept as float16", "pack this dataset with --dtype float32",
                            spares_constant=True)


class RoundingHarm:
    """What a :class:`Rounding` cast does to each column of a modality, over all its clips: the sums of the values and
    of the rounding errors, and of their squares (float64), from which their standard deviations come. Both are summed
    less the first frame's: a large offset would cancel the spread of the values away, and a constant column's one
    error would leave a residue of its sums that decides by luck whether it counts as varying."""

    def __init__(self, dim: int, rounding: Rounding):
        self.dim = dim
        self.rounding = rounding
        self.count = 0
        self.shift: np.ndarray | None = None  # (2, D): the first frame's values and rounding errors
        self.sums = np.zeros((4, dim), dtype=np.float64)
        # The float64 blocks of values and errors, allocated once rather than per block of every clip, beside the
        # clip-sized arrays each file read allocates.
        self.blocks = np.empty((2, max(1, ROUNDING_HARM_BLOCK_BYTES // (8 * dim)), dim), dtype=np.float64)

    def add(self, frames: np.ndarray, rounded: np.ndarray) -> None:
        """Count one clip: its ``frames`` and the ``rounded`` ones, a block of rows at a time: a whole clip's
        float64 copies (2.4 MB each for 300x1024) made it 4x slower in a process that imported pandas (0.8 -> 3.3
        ms), as each one was then mapped fresh from the system; blocks of 256 KB, which stay in cache, take half the
        time 1 MB ones did (0.85 against 1.8 ms a 300x768 float64 clip). A clip the cast keeps exactly (float32
        values saved as float64, small integers: common) has its errors counted without being computed."""
        if self.shift is None:
            self.shift = np.stack([frames[0], np.subtract(rounded[0], frames[0], dtype=np.float64)])
        exact = np.array_equal(frames, rounded)
        rows = self.blocks.shape[1]
        for start in range(0, len(frames), rows):
            block = slice(start, start + rows)
            size = len(frames[block])
            # float64, not float32: as exact here, yet numpy widens float16 to float64 twice as fast as to float32
            values = np.subtract(frames[block], self.shift[0], out=self.blocks[0, :size])
            self.sums[0] += values.sum(0)
            self.sums[1] += np.einsum("ij,ij->j", values, values)
            if not exact:
                errors = np.subtract(rounded[block], frames[block], out=self.blocks[1, :size])
                errors -= self.shift[1]
                self.sums[2] += errors.sum(0)
                self.sums[3] += np.einsum("ij,ij->j", errors, errors)
        if exact:  # errors of 0, less the first frame's
            self.sums[2] -= len(frames) * self.shift[1]
            self.sums[3] += len(frames) * self.shift[1] ** 2
        self.count += len(frames)

    def error_shares(self) -> np.ndarray:
        """``(D,)`` the standard deviation of each column's rounding errors over that of its values; 0 where the
        errors do not vary, where the values vary by no more than float64's own arithmetic noise
        (``NOISE_RELATIVE_STD`` of their mean: nothing to lose) and, if the rounding spares them, for columns
        training treats as constant (:func:`constant_columns`)."""
        if self.shift is None:
            return np.zeros(self.dim)
        means = self.sums / max(self.count, 1)
        values_std = np.sqrt(np.maximum(means[1] - means[0] ** 2, 0))
        errors_std = np.sqrt(np.maximum(means[3] - means[2] ** 2, 0))
        mean = means[0] + self.shift[0]
        harmless = (errors_std == 0) | (values_std <= NOISE_RELATIVE_STD * np.abs(mean))
        if self.rounding.spares_constant:
            harmless |= constant_columns(values_std, mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(harmless, 0.0, errors_std / values_std)

    def refusal(self, where: Path | str, modality: str) -> str | None:
        """What ``pack`` and ``validate`` say of the columns of ``modality`` (at ``where``) that the rounding changes
        by more than ``MAX_ROUNDING_ERROR_SHARE`` of their standard deviation over all clips (None: it harms none):
        a feature of 1e-9 scale among ordinary ones would be stored as float16 zeros while every clip passes
        :func:`_check_float16_range`."""
        shares = self.error_shares()
        columns = np.flatnonzero(shares > MAX_ROUNDING_ERROR_SHARE)
        if not columns.size:
            return None
        named = f"column {columns[0]}" if columns.size == 1 else f"columns {shortlist(columns.tolist(), shown=5)}"
        share, whose = shares[columns[0]], "its" if columns.size == 1 else "the"
        # a decimal where whole percents would read "by 10% ... (at most 10% ...)"
        shown = f"{share:.1%}" if round(share, 2) <= MAX_ROUNDING_ERROR_SHARE else f"{share:.0%}"
        return (f"{where}: {self.rounding.subject} would round {named} (of {len(shares)}, counting from 0) of modality"
                f" {modality!r} by {shown} of {whose} standard deviation over all clips"
                f"{'' if columns.size == 1 else f' of column {columns[0]}'} (at most {MAX_ROUNDING_ERROR_SHARE:.0%} is"
                f" {self.rounding.kept}); {self.rounding.remedy}.")


def _clip_source(source: ModalitySource, name: str, clip_id: int) -> str:
    """How an error names the source of one clip: its file, or its entry in a one-pickle modality (as
    :func:`~emimic.io.frame_array` is told)."""
    return str(source.path / name) if source.container is None else f"{source.container} [id {clip_id}]"


def width_tie_sentence(where: Path | str, modality: str, widths: Mapping[int, int]) -> str | None:
    """What ``pack`` and ``validate`` say of a modality whose clips (``widths``: clip id -> width) differ in width with
    no width more common than every other (None when one is): neither can blame the clips of the other widths."""
    counts = Counter(widths.values()).most_common()
    if len(counts) < 2 or counts[0][1] > counts[1][1]:
        return None
    return (f"{where}: the {len(widths)} clips of modality {modality!r} differ in feature width and no width is the"
            f" most common ({_width_counts(widths.values())}); extract the modality again so that every clip has one"
            " width.")


def _width_counts(widths: Iterable[int]) -> str:
    """``"2 of width 5, 1 of width 12"``: how many clips have each of ``widths`` (one per clip), narrowest first."""
    return ", ".join(f"{count} of width {width}" for width, count in sorted(Counter(widths).items()))


def _mixed_widths(source: ModalitySource, widths: dict[int, int]) -> DataError:
    """The refusal of a modality whose clips (``widths``: clip id -> width, in id order) differ in width, naming the
    first clip not of the most common width, as ``validate`` judges them."""
    tie = width_tie_sentence(source.container or source.path, source.name, widths)
    if tie:
        return DataError(tie)
    common, n_common = Counter(widths.values()).most_common(1)[0]
    odd = [clip_id for clip_id, width in widths.items() if width != common]
    first = _clip_source(source, source.names.get(odd[0], ""), odd[0])
    others = f" (clips {shortlist(odd)} differ: {_width_counts(widths[i] for i in odd)})" if len(odd) > 1 else ""
    them = "them" if len(odd) > 1 else "it"
    return DataError(f"{first}: has feature width {widths[odd[0]]}, but {n_common} of the {len(widths)} clips of"
                     f" modality {source.name!r} have width {common}{others}; extract {them} again as the others were,"
                     f" or delete {them} to mask {'those clips' if len(odd) > 1 else 'the clip'}.")


def _pack_modality(source: ModalitySource, folder: Path, dtype: str, *, progress: bool) -> dict:
    folder.mkdir(parents=True)
    clip_ids, read_clip = _clips(source)
    n_clips = len(clip_ids)
    ids = np.empty(n_clips, dtype=np.int64)
    lengths = np.empty(n_clips, dtype=np.int64)
    pooled: np.ndarray | None = None
    dim: int | None = None
    harms: tuple[RoundingHarm, ...] = ()  # what the cast to float32, then to the store's dtype, rounds
    sources: list[str] = ["file,clip_id,frames,blake2b"]
    row = 0
    with open(folder / "frames.bin", "wb") as frames_out, progress_bar(progress) as bar:
        task = bar.add_task(f"pack {source.name}", total=n_clips)
        for position, clip_id in enumerate(clip_ids):
            bar.advance(task)
            clip_id, name, frames, checksum = read_clip(clip_id)
            sources.append(f"{name},{clip_id},{0 if frames is None else frames.shape[0]},{checksum}")
            if frames is None:
                continue
            if dim is None:
                dim = frames.shape[1]
                pooled = np.empty((n_clips, 4 * dim), dtype=np.float32)
                harms = (RoundingHarm(dim, FLOAT32_ROUNDING), RoundingHarm(dim, FLOAT16_ROUNDING))
            elif frames.shape[1] != dim:
                # The first clips may be the odd ones: the others' widths decide which clips to name.
                widths = dict.fromkeys(ids[:row].tolist(), dim) | {clip_id: frames.shape[1]}
                widths |= _readable_widths(clip_ids[position + 1:], read_clip, lambda: bar.advance(task))
                raise _mixed_widths(source, widths)
            assert pooled is not None
            where = _clip_source(source, name, clip_id)
            own = frames  # the file's values in its own dtype: float32 may round float64 or int64 ones
            frames = single_precision(own, source=where)
            if float32_rounds(own.dtype):
                harms[0].add(own, frames)
            del own  # a wide clip is not kept beyond its turn
            if dtype == "float16":  # checked before the cast, which would warn of the overflow it refuses
                _check_float16_range(frames, where)
            stored = frames.astype(dtype, copy=False)
            if dtype == "float16":
                harms[1].add(frames, stored)
            ids[row], lengths[row] = clip_id, frames.shape[0]
            pooled[row] = pool_frames(frames)
            frames_out.write(stored.tobytes())
            row += 1
    if pooled is None:
        raise DataError(no_frames_sentence(source.path, source.name))
    for harm in harms:  # the float32 cast first: what it rounds away, no --dtype brings back
        if refusal := harm.refusal(source.container or source.path, source.name):
            raise DataError(refusal)
    ids, lengths, pooled = ids[:row], lengths[:row], pooled[:row]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    for name, array in (("ids", ids), ("lengths", lengths), ("offsets", offsets), ("pooled", pooled)):
        np.save(folder / f"{name}.npy", array, allow_pickle=False)
    (folder / "sources.csv").write_text("\n".join(sources) + "\n", encoding="utf-8")
    return {
        "dim": dim,
        "dtype": dtype,
        "n_clips": row,
        "n_empty": n_clips - row,
        "n_frames": int(lengths.sum()),
        "length": {
            "min": int(lengths.min()),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
        },
        "pooled": list(POOLED_STATS),
    }


def checked_feature_names(source: ModalitySource, dim: int) -> list[str] | None:
    """The column names recorded for ``source`` (None: none are); a count other than its width ``dim`` is a
    :class:`DataError`, for ``pack`` and ``validate`` alike."""
    names = source.feature_names
    if names is not None and len(names) != dim:
        raise DataError(
            f"{source.sidecar}: names {len(names)} feature columns but the files of modality {source.name!r} are"
            f" {dim} wide; fix its feature_names or delete it."
        )
    return names


@dataclass
class PackResult:
    """What :func:`pack` did per modality: ``packed``, ``unchanged``, ``removed``, or ``skipped`` (an extract is writing
    it and the command does not need it: see :func:`pack`)."""

    store_dir: Path
    actions: dict[str, str]
    seconds: float


def _read_manifest(store_dir: Path) -> dict | None:
    path = store_dir / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a damaged manifest only means the store must be rebuilt
    return manifest if manifest.get("version") == STORE_VERSION else None


def store_dtype(manifest: dict | None) -> str:
    """The frame dtype of a store (float32 for a new one): what a pack without an explicit dtype keeps."""
    dtypes = {entry["dtype"] for entry in (manifest or {"modalities": {}})["modalities"].values()}
    return dtypes.pop() if len(dtypes) == 1 else DTYPES[0]


_PACKED_FILES: tuple[str, ...] = ("ids.npy", "lengths.npy", "offsets.npy", "pooled.npy", "sources.csv")


def damaged_files(store_dir: Path, entry: dict) -> list[Path]:
    """The files of a packed modality that are missing or whose size disagrees with its manifest entry.

    A store is written atomically, so this only finds what happened to it afterwards: a file deleted,
    truncated (a full disk, a cleanup that emptied large files) or replaced.
    """
    folder = store_dir / entry["dir"]
    frames = folder / "frames.bin"
    expected = entry["n_frames"] * entry["dim"] * np.dtype(entry["dtype"]).itemsize
    damaged = [folder / name for name in _PACKED_FILES if not (folder / name).is_file()]
    if not frames.is_file() or frames.stat().st_size != expected:
        damaged.append(frames)
    return damaged


def _pack_command(root: Path, store_dir: Path) -> str:
    command = f"emimic pack {shlex.quote(str(root))}"
    if store_dir.resolve() not in (default_store_dir(root).resolve(), cache_store_dir(root)):
        command += f" --store {shlex.quote(str(store_dir))}"
    return command


def stale_modalities(layout: DatasetLayout, store_dir: Path, dtype: str | None = None) -> dict[str, str]:
    """Which modalities need packing (``packed``), which are current (``unchanged``), which vanished.

    ``dtype=None`` keeps the store's own dtype (see :func:`store_dtype`). A packed modality whose
    files are missing or damaged (:func:`damaged_files`) is packed again. A modality with two files for
    one clip (``00001.pkl`` and ``00001.npy``) is refused: which of them was meant is the user's call.
    """
    for source in layout.modalities.values():
        if source.duplicates:
            first, second = source.duplicates[0]
            raise DataError(duplicate_sentence(second, f"clip {first.stem}", first.name))
    manifest = _read_manifest(store_dir) or {"modalities": {}}
    dtype = dtype or store_dtype(manifest)
    packed = manifest["modalities"]
    actions = {}
    for name, source in layout.modalities.items():
        entry = packed.get(name)
        fresh = entry is not None and entry["dtype"] == dtype and entry["fingerprint"] == _fingerprint_digest(source)
        fresh = fresh and entry.get("recipe") == source.recipe and not damaged_files(store_dir, entry)
        actions[name] = "unchanged" if fresh else "packed"
    for name in packed:
        if name not in layout.modalities:
            actions[name] = "removed"
    return actions


def _prepare(store: Path) -> None:
    """Create the store folder; a clear error where it cannot be written."""
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror
        raise DataError(f"{store}: cannot create the feature store ({reason}); pass a writable --store DIR.") from None
    if not writable(store):
        raise DataError(f"{store}: the feature store cannot be written here; pass a writable --store DIR.")


def _pack_into(store: Path, source: ModalitySource, dtype: str, *, progress: bool) -> dict:
    """Pack one modality into a temporary folder, rename it into place and return its manifest entry."""
    digest = _fingerprint_digest(source)
    tmp = store / f".{source.name}-{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"
    try:
        entry = _pack_modality(source, tmp, dtype, progress=progress)
        entry["feature_names"] = checked_feature_names(source, entry["dim"])
        final = store / f"{source.name}-{digest[:12]}-{dtype}"
        shutil.rmtree(final, ignore_errors=True)  # a folder packed by a killed run but never recorded
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**entry, "dir": final.name, "fingerprint": digest, "source": str(source.path), "recipe": source.recipe}


def _write_manifest(store: Path, root: Path, entries: dict[str, dict]) -> None:
    manifest = {"version": STORE_VERSION, "root": str(root), "modalities": entries}
    write_text(store / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True))


def _remove_unlisted(store: Path, entries: dict[str, dict]) -> None:
    """Delete packed-modality folders the manifest no longer names (superseded, or packed by a killed run)."""
    keep = {entry["dir"] for entry in entries.values()}
    for folder in store.iterdir():
        if folder.is_dir() and _MODALITY_DIR.search(folder.name) and folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def pack(
    root: str | Path,
    *,
    dtype: str | None = None,
    store_dir: str | Path | None = None,
    progress: bool = True,
    needed: Collection[str] | None = None,
) -> PackResult:
    """Pack every modality of ``root`` into a FeatureStore; modalities whose files are unchanged are kept.

    ``dtype`` is the frame storage type; ``None`` keeps the store's own (float32 for a new store),
    so packing after ``pack(dtype="float16")`` never silently converts back. ``store_dir`` defaults
    to :func:`locate_store`. Ctrl-C raises :class:`~emimic.errors.Interrupted` naming what was kept.
    A stale modality an ``extract`` is writing now is refused (:class:`~emimic.errors.OutputConflict`) when it is
    ``needed`` (``None``: every modality is, as for ``emimic pack``); one the command does not need is skipped after
    one :class:`HeldModalityWarning`, keeping the version packed before, if any.
    """
    if dtype is not None and dtype not in DTYPES:
        raise DataError(f"dtype {dtype!r} is not supported; choose one of {list(DTYPES)}.")
    started = time.perf_counter()
    layout = discover(root)
    if not layout.modalities:
        raise DataError(f"{layout.root}: no modality found (no folder of per-clip .pkl/.npy/.pt files).")
    if store_dir is not None:
        check_store_place(layout.root, store_dir)
    in_root = default_store_dir(layout.root)
    made_in_root = missing_folders(in_root)  # before locate_store, whose probe of the root makes them
    store = Path(store_dir) if store_dir is not None else locate_store(layout)
    made = made_in_root if store == in_root else missing_folders(store)
    _prepare(store)
    # A pack that fails (refused) leaves no empty folder: the store itself is removed while it is held, as a pack
    # waiting for it may fill it, its parents once the lock file in them is gone.
    with (_emptied_on_failure(made[1:]), exclusive_outputs([store], store_hold()),
          _emptied_on_failure(made[:1])):
        _prepare(store)  # again: a refused pack that held it first may have removed the folder it made
        actions = _pack_held(layout, store, dtype, progress=progress, needed=needed)
    return PackResult(store, actions, time.perf_counter() - started)


@contextlib.contextmanager
def _emptied_on_failure(made: list[Path]) -> Iterator[None]:
    """Remove the ``made`` folders (deepest first) that are empty when the block fails."""
    try:
        yield
    except BaseException:
        remove_empty(made)
        raise


# How a pack refuses a modality folder an extract is writing (not waited for: extracting takes hours).
EXTRACTING = Hold("pack", busy="an emimic extract is writing this modality",
                  advice="wait for it to end, then run this command again")


class HeldModalityWarning(EmimicWarning):
    """A modality an extract is writing now is not packed: the command does not read it."""


def store_hold(*, reading: bool = False) -> Hold:
    """How a command holds a store it packs, or opens (``reading``: beside other readers): another one packing it is
    waited for (at most ``LOCK_WAIT_SECONDS``), as its result is what this one needs, and is then reused where
    current."""
    return Hold("pack", wait=LOCK_WAIT_SECONDS, busy="another emimic command is packing this feature store",
                advice="run this command again when it has ended", shared=reading)


def _pack_held(layout: DatasetLayout, store: Path, dtype: str | None, *, progress: bool,
               needed: Collection[str] | None) -> dict[str, str]:
    """Pack the stale modalities of ``layout`` into ``store``, which this process holds; what was done to each."""
    remove_leftovers(store)  # what a killed pack left: no other pack is writing it now
    entries = dict((_read_manifest(store) or {"modalities": {}})["modalities"])
    dtype = dtype or store_dtype({"modalities": entries})
    actions = stale_modalities(layout, store, dtype)
    current = [name for name, action in actions.items() if action == "unchanged"]
    for name in _skipped_while_extracted(layout, [n for n, a in actions.items() if a == "packed"], needed):
        actions[name] = "skipped"
    to_pack = [name for name, action in actions.items() if action == "packed"]
    try:
        for name in to_pack:
            entries[name] = _pack_into(store, layout.modalities[name], dtype, progress=progress)
            _write_manifest(store, layout.root, entries)  # the commit point: a killed pack keeps this modality
            current.append(name)
    except KeyboardInterrupt:
        kept = ", ".join(current) or "no modality yet"
        left = ", ".join(name for name in to_pack if name not in current)
        message = f"packing stopped; the store {store} keeps {kept} ({left} to do); run the same command to resume."
        raise Interrupted(message) from None
    removed = [name for name, action in actions.items() if action == "removed"]
    if removed:
        for name in removed:
            del entries[name]
        _write_manifest(store, layout.root, entries)
    _remove_unlisted(store, entries)
    return actions


def _skipped_while_extracted(layout: DatasetLayout, stale: list[str], needed: Collection[str] | None) -> list[str]:
    """The ``stale`` modalities an extract is writing now, which this command does not need: they are not packed
    (after one warning). One it needs is refused: a modality half extracted would be packed as it is now, its
    other clips left out as missing."""
    by_folder = {layout.modalities[name].path.resolve(): name for name in stale}
    busy = held_by_others(by_folder)
    refused = [folder for folder in busy if needed is None or by_folder[folder] in needed]
    if refused:
        raise OutputConflict(EXTRACTING.refusal(refused[0]))
    if busy:
        names, it = ", ".join(str(folder) for folder in busy), "them" if len(busy) > 1 else "it"
        warnings.warn(f"{names}: an emimic extract is writing {it} now and this command does not read {it}, so {it} is"
                      f" not packed (the store keeps what it held of {it}); pack {it} once the extract has ended.",
                      HeldModalityWarning, stacklevel=5)
    return [by_folder[folder] for folder in busy]


def _held_for_reading(store_dir: Path) -> contextlib.AbstractContextManager[None]:
    """The store held while it is opened, so that no pack replaces the files of the manifest being read. A store this
    user cannot write beside (a read-only root packed earlier) is opened unheld: no pack of theirs can change it. So is
    any store where no lock exists (Windows): the commands that only read it need not warn that they cannot lock it."""
    if flock_available() and store_dir.is_dir() and write_failure(store_dir.parent) is None:
        return exclusive_outputs([store_dir], store_hold(reading=True))
    return contextlib.nullcontext()


class FeatureStore:
    """Read-only, memory-mapped access to a packed store.

    Example::

        store = FeatureStore.open("data/sim/.emimic/store")
        x = store.pooled("vit", [1, 2, 3])   # (3, 4*D) float32: mean, std, min, max
        f = store.frames("vit", 1)           # (T, D)
    """

    def __init__(self, store_dir: Path, manifest: dict):
        self.path = store_dir
        self.manifest = manifest
        self._ids: dict[str, np.ndarray] = {}
        self._offsets: dict[str, np.ndarray] = {}
        self._lengths: dict[str, np.ndarray] = {}
        self._pooled: dict[str, np.ndarray] = {}
        self._frames: dict[str, np.ndarray] = {}
        self._sources: dict[str, bytes] = {}
        for name, entry in manifest["modalities"].items():
            if damaged := damaged_files(store_dir, entry):
                raise DataError(
                    f"{damaged[0]}: the packed {name!r} features are missing or damaged (not the size the store's"
                    f" manifest records); pack them again: {_pack_command(Path(manifest['root']), store_dir)}"
                )
            folder = store_dir / entry["dir"]
            self._ids[name] = np.load(folder / "ids.npy")
            self._offsets[name] = np.load(folder / "offsets.npy")
            self._lengths[name] = np.load(folder / "lengths.npy")
            self._pooled[name] = np.load(folder / "pooled.npy", mmap_mode="r")
            shape = (entry["n_frames"], entry["dim"])
            self._frames[name] = np.memmap(folder / "frames.bin", dtype=entry["dtype"], mode="r", shape=shape)
            # read now, while the store is held: a pack may delete the folder once it is open
            self._sources[name] = (folder / "sources.csv").read_bytes()

    @classmethod
    def open(cls, store_dir: str | Path) -> FeatureStore:
        store_dir = Path(store_dir)
        # Everything is read or mapped under the lock: the memory maps stay valid once open, even if a pack then
        # replaces their files, and nothing is read from the store's folders later.
        with _held_for_reading(store_dir):
            manifest = _read_manifest(store_dir)
            if manifest is None:
                raise DataError(f"{store_dir}: no packed feature store here; run `emimic pack` on the dataset root.")
            return cls(store_dir, manifest)

    @property
    def modalities(self) -> list[str]:
        return sorted(self.manifest["modalities"])

    @property
    def identity(self) -> dict[str, dict]:
        """Per modality the width, dtype and source fingerprint: what a trained model must match."""
        return {
            name: {"dim": e["dim"], "dtype": e["dtype"], "fingerprint": e["fingerprint"]}
            for name, e in self.manifest["modalities"].items()
        }

    def content_digest(self, modality: str, ids: Collection[int] | None = None) -> str:
        """Digest of the modality's source files of the clips ``ids`` by content (names, frame counts, checksums):
        the same for a copy of the data wherever it lies and whatever its file times, unlike the manifest's
        fingerprint, and whatever the files of other clips (a test clip extracted later changes no run's data, unless
        it joins a one-pickle modality, whose one checksum every clip's row carries).
        ``ids`` None: the digest of every clip's, as emimic recorded it before (the raw bytes of ``sources.csv``)."""
        self._check(modality)
        sources = self._sources[modality]
        if ids is None:
            return hashlib.sha256(sources).hexdigest()
        # rows end in "\n" alone (pack writes them so): splitlines() would also cut a file name at "\x0c" or "\x85"
        header, *rows = sources.decode("utf-8").removesuffix("\n").split("\n")
        wanted = {int(clip_id) for clip_id in ids}
        # file,clip_id,frames,blake2b: split from the right, as a file name may hold a comma
        kept = [row for row in rows if int(row.rsplit(",", 3)[1]) in wanted]
        return hashlib.sha256("\n".join([header, *kept]).encode()).hexdigest()

    def recipe(self, modality: str) -> dict | None:
        """How a modality was extracted (its ``_extractor.json`` at packing time); None if emimic did not extract it."""
        self._check(modality)
        return self.manifest["modalities"][modality].get("recipe")

    def _check(self, modality: str) -> None:
        if modality not in self.manifest["modalities"]:
            raise DataError(f"modality {modality!r} is not in the feature store; available: {self.modalities}.")

    def dim(self, modality: str) -> int:
        self._check(modality)
        return int(self.manifest["modalities"][modality]["dim"])

    def feature_names(self, modality: str) -> list[str] | None:
        """The modality's column names in order, as its extractor recorded them; None when unrecorded."""
        self._check(modality)
        return self.manifest["modalities"][modality].get("feature_names")

    def ids(self, modality: str) -> np.ndarray:
        self._check(modality)
        return self._ids[modality]

    def rows(self, modality: str, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row of each requested clip in the modality's arrays, and whether the clip is present."""
        self._check(modality)
        known = self._ids[modality]
        wanted = np.asarray(ids, dtype=np.int64)
        rows = np.searchsorted(known, wanted)
        rows = np.minimum(rows, max(len(known) - 1, 0))
        present = known[rows] == wanted if len(known) else np.zeros(len(wanted), dtype=bool)
        return rows, present

    def present(self, modality: str, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.rows(modality, ids)[1]

    def lengths(self, modality: str, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        rows, present = self.rows(modality, ids)
        return np.where(present, self._lengths[modality][rows], 0)

    def pooled(self, modality: str, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(N, 4*D)`` float32 pooled statistics ``[mean, std, min, max]``; zeros where a clip is absent."""
        rows, present = self.rows(modality, ids)
        out = np.array(self._pooled[modality][rows], dtype=np.float32)
        out[~present] = 0.0
        return out

    def spans(self, modality: str, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each clip's frames start in :meth:`frame_rows` and how many there are (0 where absent)."""
        rows, present = self.rows(modality, ids)
        return self._offsets[modality][rows], np.where(present, self._lengths[modality][rows], 0)

    def frame_rows(self, modality: str) -> np.ndarray:
        """The memory-mapped ``(frames of all clips, D)`` array of a modality (read-only; index it with spans)."""
        self._check(modality)
        return self._frames[modality]

    def frames(self, modality: str, clip_id: int) -> np.ndarray:
        """The ``(T, D)`` frames of one clip (a float32 copy); a :class:`DataError` if it is absent."""
        rows, present = self.rows(modality, [clip_id])
        if not present[0]:
            raise DataError(f"clip {clip_id} has no {modality!r} features.")
        start, length = self._offsets[modality][rows[0]], self._lengths[modality][rows[0]]
        return np.array(self._frames[modality][start : start + length], dtype=np.float32)
