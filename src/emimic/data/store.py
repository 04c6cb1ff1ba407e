"""FeatureStore: every modality of a dataset packed into memory-mapped arrays.

Reading 30k small pickles takes minutes; a packed store opens in milliseconds. Per modality the
store keeps the frames of all clips concatenated in one raw array (float32 or float16), the
clip ids, offsets and lengths, and per-clip pooled statistics ``[mean, std, min, max]`` (always
float32, computed before any float16 rounding). ``manifest.json`` records shapes, dtypes and a
fingerprint of the source files; a per-modality ``sources.csv`` keeps each file's checksum.

Layout under ``<root>/.emimic/store`` (or any ``store_dir``)::

    manifest.json
    <modality>-<token>/frames.bin  ids.npy  offsets.npy  lengths.npy  pooled.npy  sources.csv

Writes are atomic: a modality is packed into a temporary folder, renamed into place, and the
manifest (the single commit point) is replaced last, so an interrupted pack leaves the previous
store intact.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emimic.data.layout import DatasetLayout, ModalitySource, discover, read_mapping
from emimic.errors import DataError, EmptyFeatures
from emimic.io import as_frames, decode_array, write_text
from emimic.progress import progress_bar

STORE_VERSION = 1
POOLED_STATS: tuple[str, ...] = ("mean", "std", "min", "max")
DTYPES: tuple[str, ...] = ("float32", "float16")


def default_store_dir(root: Path) -> Path:
    return root / ".emimic" / "store"


def _fingerprint_digest(source: ModalitySource) -> str:
    rows = source.fingerprint()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def pool_frames(frames: np.ndarray) -> np.ndarray:
    """``[mean, std, min, max]`` over the frame axis of a ``(T, D)`` array, as one ``4*D`` vector."""
    wide = frames.astype(np.float64, copy=False)
    return np.concatenate([wide.mean(0), wide.std(0), wide.min(0), wide.max(0)]).astype(np.float32)


Clip = tuple[int, str, np.ndarray | None, str]


def _clips(source: ModalitySource) -> tuple[int, Iterator[Clip]]:
    """The number of clips of a modality and an iterator of ``(clip id, file name, frames, checksum)``
    in id order; ``frames`` is None for a file that holds zero frames (masked like a missing file)."""
    if source.container is not None:
        data = source.container.read_bytes()
        checksum = hashlib.blake2b(data, digest_size=16).hexdigest()
        mapping = read_mapping(source.container)

        def from_container() -> Iterator[Clip]:
            for clip_id in sorted(mapping):
                try:
                    frames = as_frames(mapping[clip_id], source=f"{source.container} [id {clip_id}]")
                except EmptyFeatures:
                    frames = None
                yield clip_id, source.container.name, frames, checksum

        return len(mapping), from_container()

    def from_files() -> Iterator[Clip]:
        for clip_id in sorted(source.names):
            path = source.path / source.names[clip_id]
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise DataError(f"{path}: cannot be read ({exc.strerror}).") from None
            try:
                frames = decode_array(data, path.suffix, source=str(path))
            except EmptyFeatures:
                frames = None
            yield clip_id, path.name, frames, hashlib.blake2b(data, digest_size=16).hexdigest()

    return len(source.names), from_files()


def _pack_modality(source: ModalitySource, folder: Path, dtype: str, *, progress: bool) -> dict:
    folder.mkdir(parents=True)
    n_clips, clips = _clips(source)
    ids = np.empty(n_clips, dtype=np.int64)
    lengths = np.empty(n_clips, dtype=np.int64)
    pooled: np.ndarray | None = None
    dim: int | None = None
    first_file = ""
    sources: list[str] = ["file,clip_id,frames,blake2b"]
    row = 0
    with open(folder / "frames.bin", "wb") as frames_out, progress_bar(progress) as bar:
        task = bar.add_task(f"pack {source.name}", total=n_clips)
        for clip_id, name, frames, checksum in clips:
            bar.advance(task)
            sources.append(f"{name},{clip_id},{0 if frames is None else frames.shape[0]},{checksum}")
            if frames is None:
                continue
            if dim is None:
                dim, first_file = frames.shape[1], name
                pooled = np.empty((n_clips, 4 * dim), dtype=np.float32)
            elif frames.shape[1] != dim:
                raise DataError(
                    f"{source.path / name}: has feature width {frames.shape[1]}, but {first_file} and the other"
                    f" clips of modality {source.name!r} have width {dim}."
                )
            assert pooled is not None
            ids[row], lengths[row] = clip_id, frames.shape[0]
            pooled[row] = pool_frames(frames)
            frames_out.write(frames.astype(dtype, copy=False).tobytes())
            row += 1
    if pooled is None:
        raise DataError(f"{source.path}: no clip of modality {source.name!r} holds any frame.")
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


@dataclass
class PackResult:
    """What :func:`pack` did per modality: ``packed``, ``unchanged`` or ``removed``."""

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


def stale_modalities(layout: DatasetLayout, store_dir: Path, dtype: str) -> dict[str, str]:
    """Which modalities need packing (``packed``), which are current (``unchanged``), which vanished."""
    manifest = _read_manifest(store_dir) or {"modalities": {}}
    packed = manifest["modalities"]
    actions = {}
    for name, source in layout.modalities.items():
        entry = packed.get(name)
        fresh = entry is not None and entry["dtype"] == dtype and entry["fingerprint"] == _fingerprint_digest(source)
        fresh = fresh and (store_dir / entry["dir"]).is_dir()
        actions[name] = "unchanged" if fresh else "packed"
    for name in packed:
        if name not in layout.modalities:
            actions[name] = "removed"
    return actions


def pack(
    root: str | Path,
    *,
    dtype: str = "float32",
    store_dir: str | Path | None = None,
    progress: bool = True,
) -> PackResult:
    """Pack every modality of ``root`` into a FeatureStore; modalities whose files are unchanged are kept."""
    if dtype not in DTYPES:
        raise DataError(f"dtype {dtype!r} is not supported; choose one of {list(DTYPES)}.")
    started = time.perf_counter()
    layout = discover(root)
    if not layout.modalities:
        raise DataError(f"{layout.root}: no modality found (no folder of per-clip .pkl/.npy/.pt files).")
    store = Path(store_dir) if store_dir is not None else default_store_dir(layout.root)
    store.mkdir(parents=True, exist_ok=True)
    for leftover in store.glob(".*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    old = _read_manifest(store) or {"modalities": {}}
    actions = stale_modalities(layout, store, dtype)
    entries: dict[str, dict] = {}
    created: list[Path] = []
    try:
        for name, action in actions.items():
            if action == "unchanged":
                entries[name] = old["modalities"][name]
            elif action == "packed":
                source = layout.modalities[name]
                digest = _fingerprint_digest(source)
                tmp = store / f".{name}-{uuid.uuid4().hex[:8]}.tmp"
                entry = _pack_modality(source, tmp, dtype, progress=progress)
                final = store / f"{name}-{digest[:12]}-{dtype}"
                shutil.rmtree(final, ignore_errors=True)
                tmp.rename(final)
                created.append(final)
                entries[name] = {**entry, "dir": final.name, "fingerprint": digest, "source": str(source.path)}
    except BaseException:
        for path in [*created, *store.glob(".*.tmp")]:
            if path.name not in {e.get("dir") for e in old["modalities"].values()}:
                shutil.rmtree(path, ignore_errors=True)
        raise
    manifest = {"version": STORE_VERSION, "root": str(layout.root), "modalities": entries}
    write_text(store / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
    keep = {entry["dir"] for entry in entries.values()}
    for stale in (e["dir"] for e in old["modalities"].values()):
        if stale not in keep:
            shutil.rmtree(store / stale, ignore_errors=True)
    return PackResult(store, actions, time.perf_counter() - started)


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
        for name, entry in manifest["modalities"].items():
            folder = store_dir / entry["dir"]
            self._ids[name] = np.load(folder / "ids.npy")
            self._offsets[name] = np.load(folder / "offsets.npy")
            self._lengths[name] = np.load(folder / "lengths.npy")
            self._pooled[name] = np.load(folder / "pooled.npy", mmap_mode="r")
            shape = (entry["n_frames"], entry["dim"])
            self._frames[name] = np.memmap(folder / "frames.bin", dtype=entry["dtype"], mode="r", shape=shape)

    @classmethod
    def open(cls, store_dir: str | Path) -> FeatureStore:
        store_dir = Path(store_dir)
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

    def content_digest(self, modality: str) -> str:
        """Digest of the modality's source files by content (names, frame counts, checksums): the same for
        a copy of the data wherever it lies and whatever its file times, unlike the manifest's fingerprint."""
        self._check(modality)
        sources = self.path / self.manifest["modalities"][modality]["dir"] / "sources.csv"
        return hashlib.sha256(sources.read_bytes()).hexdigest()

    def _check(self, modality: str) -> None:
        if modality not in self.manifest["modalities"]:
            raise DataError(f"modality {modality!r} is not in the feature store; available: {self.modalities}.")

    def dim(self, modality: str) -> int:
        self._check(modality)
        return int(self.manifest["modalities"][modality]["dim"])

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

    def frames(self, modality: str, clip_id: int) -> np.ndarray:
        """The ``(T, D)`` frames of one clip (a float32 copy); a :class:`DataError` if it is absent."""
        rows, present = self.rows(modality, [clip_id])
        if not present[0]:
            raise DataError(f"clip {clip_id} has no {modality!r} features.")
        start, length = self._offsets[modality][rows[0]], self._lengths[modality][rows[0]]
        return np.array(self._frames[modality][start : start + length], dtype=np.float32)
