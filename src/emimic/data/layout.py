"""Discover a Hume-Vidmimic2-style dataset root: split CSVs and modalities.

Any sub-folder holding per-clip arrays named ``<id>.{pkl,npy,pt}`` is a modality named after the
folder; a root-level ``<name>.pkl`` holding ``{id: array}`` is a modality too (some teams ship
features that way). Media and bookkeeping folders are not modalities. Discovery only lists
files; reading and validating them is the job of :mod:`emimic.data.store` and
:mod:`emimic.data.validate`. A folder written by ``emimic extract`` also holds ``_extractor.json``,
whose ``feature_names`` name its columns in order; the store records them with the modality.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emimic.errors import DataError
from emimic.io import ARRAY_SUFFIXES, read_error, read_object
from emimic.labels import CLIP_ID_FORMS, is_clip_stem, read_clip_id, whole_clip_id

SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train_split.csv",),
    "valid": ("valid_split.csv", "val_split.csv"),
    "test": ("test_split.csv",),
}
# Folders that hold media or emimic's own state, never per-clip feature arrays.
NON_MODALITY_DIRS: frozenset[str] = frozenset({"raw", "face_images", "audio", "video", "videos"})
TRANSCRIPT_DIR = "text"
VIDEO_DIR = "raw"
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
# The record an extractor leaves in each folder it writes (name, parameters, feature names).
FEATURE_SIDECAR = "_extractor.json"
AUDIO_DIR = "audio"
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".mp3", ".flac", ".m4a")
# The media folders extraction reads, with the suffixes it reads in each.
MEDIA_SUFFIXES: dict[str, tuple[str, ...]] = {VIDEO_DIR: VIDEO_SUFFIXES, AUDIO_DIR: AUDIO_SUFFIXES}
# Recordings FFmpeg demuxes (video or sound containers), read or not: what a folder of clips may hold besides the files
# emimic reads there, as opposed to notes, spreadsheets and emimic's own outputs. '.ts' is left out: TypeScript has it.
RECORDING_SUFFIXES: frozenset[str] = frozenset({
    *VIDEO_SUFFIXES, *AUDIO_SUFFIXES,
    ".3gp", ".3g2", ".mpg", ".mpeg", ".m2v", ".mts", ".m2ts", ".vob", ".flv", ".f4v", ".wmv", ".asf", ".ogv", ".mxf",
    ".dv", ".rm", ".rmvb", ".ogg", ".oga", ".opus", ".aac", ".ac3", ".amr", ".aif", ".aiff", ".caf", ".m4b", ".wma",
    ".weba", ".mka",
})


@dataclass
class ModalitySource:
    """Where one modality's per-clip arrays live.

    ``names`` maps clip id to its file name in ``path`` for a folder modality; ``container`` is
    the single ``{id: array}`` pickle of a mapping modality. Names stay plain strings because
    building 45k ``Path`` objects would dominate the time to open a packed dataset.
    """

    name: str
    path: Path
    names: dict[int, str] = field(default_factory=dict)
    container: Path | None = None
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)
    stray: list[Path] = field(default_factory=list)

    @functools.cached_property
    def ids(self) -> list[int]:
        if self.container is not None:
            return sorted(read_mapping(self.container))
        return sorted(self.names)

    @property
    def sidecar(self) -> Path | None:
        """The folder's extractor record, if it has one (a mapping modality never does)."""
        path = self.path / FEATURE_SIDECAR
        return path if self.container is None and path.is_file() else None

    @functools.cached_property
    def feature_names(self) -> list[str] | None:
        """The column names recorded in the folder's ``_extractor.json``, or None when nothing names them."""
        if self.sidecar is None:
            return None
        try:
            record = json.loads(self.sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{self.sidecar}: cannot be read as JSON ({exc}); fix or delete it.") from None
        names = record.get("feature_names") if isinstance(record, dict) else None
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise DataError(f"{self.sidecar}: feature_names must be a list of column names, not {names!r}.")
        return names

    @property
    def recipe(self) -> dict | None:
        """How this modality was extracted (its ``_extractor.json``, see :mod:`emimic.features.recipe`), None for
        features emimic did not extract."""
        return read_recipe(self.path) if self.container is None else None

    @property
    def files(self) -> dict[int, Path]:
        return {clip_id: self.path / name for clip_id, name in self.names.items()}

    def fingerprint(self) -> list[tuple[str, int, int]]:
        """(name, size, mtime) of every source file and of the extractor record: cheap change detection
        without reading."""
        if self.container is not None:
            stat = self.container.stat()
            return [(self.container.name, stat.st_size, stat.st_mtime_ns)]
        folder = str(self.path)
        rows = []
        for clip_id in sorted(self.names):
            stat = os.stat(os.path.join(folder, self.names[clip_id]))
            rows.append((self.names[clip_id], stat.st_size, stat.st_mtime_ns))
        if self.sidecar is not None:  # new feature names must reach the store
            stat = self.sidecar.stat()
            rows.append((FEATURE_SIDECAR, stat.st_size, stat.st_mtime_ns))
        return rows


@dataclass
class FolderScan:
    """One folder as discovery saw it: its clip files (``names``: id -> file name) and, by reason, what it left
    out (hidden and ``_`` names aside, which are never looked at)."""

    names: dict[int, str] = field(default_factory=dict)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # (kept, left out): a second file of a clip
    stray: list[Path] = field(default_factory=list)  # files whose name is no clip id
    escaping: list[Path] = field(default_factory=list)  # links leaving the dataset root
    dangling: list[Path] = field(default_factory=list)  # links to a missing file
    folders: list[Path] = field(default_factory=list)  # folders (and links to folders) inside it
    other_suffix: list[Path] = field(default_factory=list)  # files of a suffix the folder's reader does not read


@dataclass
class DatasetLayout:
    root: Path
    split_files: dict[str, Path]
    modalities: dict[str, ModalitySource]
    transcript_names: dict[int, str] = field(default_factory=dict)
    escaping_links: list[Path] = field(default_factory=list)
    # How raw/ and audio/ were scanned, by folder name: what extraction reads and what it leaves out.
    media_scans: dict[str, FolderScan] = field(default_factory=dict)

    @property
    def transcripts(self) -> dict[int, Path]:
        return {clip_id: self.root / TRANSCRIPT_DIR / name for clip_id, name in self.transcript_names.items()}

    @property
    def videos(self) -> dict[int, Path]:
        return {clip_id: self.root / VIDEO_DIR / name for clip_id, name in self._media_names(VIDEO_DIR).items()}

    @property
    def audio_files(self) -> dict[int, Path]:
        """``audio/<id>.{wav,mp3,flac,m4a}``: extracted audio, read when a clip has no video or no sound in it."""
        return {clip_id: self.root / AUDIO_DIR / name for clip_id, name in self._media_names(AUDIO_DIR).items()}

    def _media_names(self, folder: str) -> dict[int, str]:
        scan = self.media_scans.get(folder)
        return scan.names if scan is not None else {}


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except ValueError:
        return False
    return True


def read_mapping(path: Path) -> dict[int, object]:
    """Read a ``{id: array}`` container pickle; keys are parsed as clip ids."""
    if path.is_file() and path.stat().st_size == 0:  # unlike a per-clip file, deleting it drops the whole modality
        raise DataError(f"{path}: is an empty file (0 bytes) where the features of every clip of modality"
                        f" {path.stem!r} belong; restore or extract it again, or delete it to train without them.")
    try:
        value = read_object(path)
    except Exception as exc:
        raise read_error(str(path), exc) from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: holds {type(value).__name__}, expected a dict of clip id to array.")
    mapping: dict[int, object] = {}
    for key, array in value.items():
        clip_id = _clip_id_key(key, source=str(path))
        if clip_id in mapping:  # 3 and "00003": which array was meant is the user's to say
            raise DataError(f"{path}: holds two keys for clip id {clip_id}; keep one array per clip.")
        mapping[clip_id] = array
    return mapping


def _clip_id_key(key: object, *, source: str) -> int:
    """A container key as a clip id. Keys come from the file: a crafted one is described, never printed whole."""
    clip_id = _key_clip_id(key)
    if clip_id is not None:
        return clip_id
    # repr() of a huge int raises, and a long or unprintable string would flood the message.
    printable = (
        isinstance(key, int | float | str | np.integer | np.floating)
        and not (isinstance(key, int) and key.bit_length() > 63)
        and not (isinstance(key, str) and (len(key) > 32 or not key.isprintable()))
    )
    what = f"the key {key!r}" if printable else f"a {type(key).__name__} key"
    raise DataError(f"{source}: holds {what}, which is not a clip id; the keys of a one-pickle modality must be"
                    f" the clips' ids in {CLIP_ID_FORMS}, one per clip.")


def _key_clip_id(key: object) -> int | None:
    """The clip id a key names: a string by the written rule, a number by its value; a bool names none."""
    if isinstance(key, str):
        return read_clip_id(key)
    if isinstance(key, bool) or not isinstance(key, int | float | np.integer | np.floating):
        return None
    return whole_clip_id(int(key) if isinstance(key, int | np.integer) else float(key))


def read_recipe(folder: Path) -> dict | None:
    """The extraction recipe in ``folder/_extractor.json``, or None when there is none or it is unreadable."""
    try:
        recipe = json.loads((folder / FEATURE_SIDECAR).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recipe if isinstance(recipe, dict) else None


def unread(name: str) -> bool:
    """Whether discovery passes over a file or folder of this name: extractor sidecars (``_extractor.json``) and
    hidden entries, ``.emimic`` among them."""
    return name.startswith((".", "_"))


def _scan_folder(folder: Path, root: Path, suffixes: tuple[str, ...]) -> FolderScan:
    """The clip files of one folder, and what it holds besides them."""
    scan = FolderScan()
    with os.scandir(folder) as listed:
        entries = sorted(listed, key=lambda entry: entry.name)  # which of two files of a clip is kept must not vary
    for entry in entries:
        if unread(entry.name):
            continue
        path = Path(entry.path)
        stem, dot, suffix = entry.name.rpartition(".")
        if entry.is_symlink() and not path.exists():
            scan.dangling.append(path)
        elif entry.is_dir():
            scan.folders.append(path)
        elif not dot or "." + suffix.lower() not in suffixes:
            scan.other_suffix.append(path)
        elif not entry.is_file():
            continue  # a pipe or device under a clip's name: nothing to read
        elif entry.is_symlink() and not _inside(path, root):
            scan.escaping.append(path)
        elif not is_clip_stem(stem):
            scan.stray.append(path)
        elif int(stem) in scan.names:
            scan.duplicates.append((folder / scan.names[int(stem)], path))
        else:
            scan.names[int(stem)] = entry.name
    return scan


def _refuse_line_break(container: Path) -> None:
    """Refuse a one-pickle modality whose file name holds a line break: the feature store records each clip's source
    file name on a line of its own (``sources.csv``), which the name would cut in two. (Reading such lines otherwise
    would change the digests of every run recorded so far.)"""
    if "\n" in container.name:
        raise DataError(f"{container.parent}: the one-pickle modality {container.name!r} has a line break in its file"
                        " name, which the feature store cannot record; rename the file without it.")


def duplicate_sentence(second: Path | str, what: str, first: Path | str) -> str:
    """What every command says of a ``second`` file (or folder) that holds ``what`` the ``first`` one does (a clip,
    a modality): which of the two was meant is the user's to say."""
    return f"{second}: duplicates {what} ({first}); which one was meant is yours to say, so keep one of the two."


def _add_modality(modalities: dict[str, ModalitySource], source: ModalitySource) -> None:
    """Record a discovered modality; a second one of its name (a folder ``vit/`` and a one-pickle ``vit.pkl``, or
    ``vit.pkl`` and ``vit.npy``) is refused rather than left to replace the first."""
    first = modalities.get(source.name)
    if first is not None:
        raise DataError(duplicate_sentence(source.container or source.path, f"modality {source.name!r}",
                                           first.container or first.path))
    modalities[source.name] = source


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
    transcripts: dict[int, str] = {}
    media: dict[str, FolderScan] = {}
    escaping: list[Path] = []
    for entry in sorted(root.iterdir()):
        if unread(entry.name):
            continue
        if entry.is_file() and entry.suffix.lower() in ARRAY_SUFFIXES:
            _refuse_line_break(entry)
            _add_modality(modalities, ModalitySource(entry.stem, entry, container=entry))
            continue
        if not entry.is_dir():
            continue
        if entry.name in MEDIA_SUFFIXES:
            media[entry.name] = _scan_folder(entry, root, MEDIA_SUFFIXES[entry.name])
            escaping += media[entry.name].escaping
            continue
        if entry.name in NON_MODALITY_DIRS:
            continue
        if entry.name == TRANSCRIPT_DIR:
            text = _scan_folder(entry, root, (".txt",))
            transcripts, escaping = text.names, escaping + text.escaping
        scan = _scan_folder(entry, root, ARRAY_SUFFIXES)
        escaping += scan.escaping
        if scan.names or scan.duplicates or scan.stray:
            _add_modality(modalities, ModalitySource(entry.name, entry, scan.names, None, scan.duplicates, scan.stray))
    return DatasetLayout(root, split_files, modalities, transcripts, escaping, media)
