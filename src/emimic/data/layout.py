"""Discover a Hume-Vidmimic2-style dataset root: split CSVs and modalities.

Any sub-folder holding per-clip arrays named ``<id>.{pkl,npy,pt}`` is a modality named after the
folder; a root-level ``<name>.pkl`` holding ``{id: array}`` is a modality too (some teams ship
features that way). Media and bookkeeping folders are not modalities. Discovery only lists
files; reading and validating them is the job of :mod:`emimic.data.store` and
:mod:`emimic.data.validate`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from emimic.errors import DataError
from emimic.io import ARRAY_SUFFIXES, read_object
from emimic.labels import parse_clip_id

SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train_split.csv",),
    "valid": ("valid_split.csv", "val_split.csv"),
    "test": ("test_split.csv",),
}
# Folders that hold media or emimic's own state, never per-clip feature arrays.
NON_MODALITY_DIRS: frozenset[str] = frozenset({"raw", "face_images", "audio", "video", "videos"})
TRANSCRIPT_DIR = "text"


@dataclass
class ModalitySource:
    """Where one modality's per-clip arrays live.

    ``files`` maps clip id to its file for a folder modality; ``container`` is the single
    ``{id: array}`` pickle of a mapping modality.
    """

    name: str
    path: Path
    files: dict[int, Path] = field(default_factory=dict)
    container: Path | None = None
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)
    stray: list[Path] = field(default_factory=list)

    @functools.cached_property
    def ids(self) -> list[int]:
        if self.container is not None:
            return sorted(read_mapping(self.container))
        return sorted(self.files)

    def fingerprint(self) -> list[tuple[str, int, int]]:
        """(relative name, size, mtime) of every source file: cheap change detection without reading."""
        paths = [self.container] if self.container is not None else [self.files[i] for i in sorted(self.files)]
        rows = []
        for path in paths:
            stat = path.stat()
            rows.append((path.name, stat.st_size, stat.st_mtime_ns))
        return rows


@dataclass
class DatasetLayout:
    root: Path
    split_files: dict[str, Path]
    modalities: dict[str, ModalitySource]
    transcripts: dict[int, Path]
    videos: dict[int, Path]
    escaping_links: list[Path] = field(default_factory=list)


def _clip_id_of(path: Path) -> int | None:
    stem = path.stem
    return int(stem) if stem.isdigit() else None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except ValueError:
        return False
    return True


def read_mapping(path: Path) -> dict[int, object]:
    """Read a ``{id: array}`` container pickle; keys are parsed as clip ids."""
    try:
        value = read_object(path)
    except Exception as exc:
        raise DataError(f"{path}: cannot be read ({type(exc).__name__}: {exc}).") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: holds {type(value).__name__}, expected a dict of clip id to array.")
    return {parse_clip_id(key, source=str(path)): array for key, array in value.items()}


def _scan_folder(folder: Path, root: Path, suffixes: tuple[str, ...]) -> tuple[dict[int, Path], list, list, list]:
    files: dict[int, Path] = {}
    duplicates: list[tuple[Path, Path]] = []
    stray: list[Path] = []
    escaping: list[Path] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith((".", "_")) or not entry.is_file():
                continue
            path = Path(entry.path)
            if path.suffix.lower() not in suffixes:
                continue
            if entry.is_symlink() and not _inside(path, root):
                escaping.append(path)
                continue
            clip_id = _clip_id_of(path)
            if clip_id is None:
                stray.append(path)
            elif clip_id in files:
                duplicates.append((files[clip_id], path))
            else:
                files[clip_id] = path
    return files, duplicates, stray, escaping


def discover(root: str | Path) -> DatasetLayout:
    """List the splits, modalities, transcripts and videos of a dataset root."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: dataset root is not a folder.")
    root = root.resolve()
    split_files: dict[str, Path] = {}
    for split, names in SPLIT_FILES.items():
        for name in names:
            if (root / name).is_file():
                split_files[split] = root / name
                break
    modalities: dict[str, ModalitySource] = {}
    transcripts: dict[int, Path] = {}
    videos: dict[int, Path] = {}
    escaping: list[Path] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file() and entry.suffix.lower() in ARRAY_SUFFIXES:
            modalities[entry.stem] = ModalitySource(entry.stem, entry, container=entry)
            continue
        if not entry.is_dir():
            continue
        if entry.name == "raw":
            videos, _, _, bad = _scan_folder(entry, root, (".mp4", ".avi", ".mkv", ".webm", ".mov"))
            escaping += bad
            continue
        if entry.name in NON_MODALITY_DIRS:
            continue
        if entry.name == TRANSCRIPT_DIR:
            transcripts, _, _, bad = _scan_folder(entry, root, (".txt",))
            escaping += bad
        files, duplicates, stray, bad = _scan_folder(entry, root, ARRAY_SUFFIXES)
        escaping += bad
        if files or duplicates or stray:
            modalities[entry.name] = ModalitySource(entry.name, entry, files, None, duplicates, stray)
    return DatasetLayout(root, split_files, modalities, transcripts, videos, escaping)
