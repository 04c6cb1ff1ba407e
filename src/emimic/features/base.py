"""The extractor contract; the one list of extractor names is :data:`emimic.registry.EXTRACTORS`.

An :class:`Extractor` turns one decoded clip (:class:`ClipInput`) into one or more named
outputs, each a :class:`pandas.DataFrame` whose columns are feature names and whose index is
``(start, end)`` as :class:`pandas.Timedelta` (audinterface's convention): many rows for a
frame-level output, one row spanning the clip for a clip-level output, a ``str`` for a
transcript, or ``{frame number: RGB image}`` for images. The pipeline
(:mod:`emimic.features.pipeline`) saves them as ``<root>/<output>/<id>.npy`` (``(T, D)`` or
``(D,)``), ``<root>/text/<id>.txt`` or ``<root>/<output>/<id>/<n>.jpg``.

An extractor that has nothing to say about a clip (no audio track, no face, an empty transcript)
raises :class:`NoSignal`: the clip is *masked* for its outputs (no file is written), which is
data, not an error.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from emimic.errors import ConfigError, DataError, ModelNotFoundError
from emimic.features.media import Media, decode
from emimic.registry import EXTRACTORS

Level = Literal["frame", "clip", "text", "images"]
# A DataFrame (frame/clip level), a transcript, or RGB images keyed by sampled-frame number.
Result = pd.DataFrame | str | dict[int, np.ndarray]


class NoSignal(Exception):
    """The clip carries nothing this extractor can use; its outputs are masked for this clip."""


@dataclass(frozen=True)
class Output:
    """One folder an extractor writes: ``<root>/<name>/<id>.npy``, ``<id>.txt`` (``level="text"``) or
    ``<id>/<n>.jpg`` (``level="images"``)."""

    name: str
    level: Level
    description: str


@dataclass
class ClipInput:
    """One clip as extractors see it: its decoded media plus values shared between extractors.

    ``transcript`` is the clip's text when known (the ``whisper`` extractor sets it for the
    extractors that run after it, or the pipeline reads ``text/<id>.txt``). ``cache`` holds
    per-clip intermediate results that several extractors need (face landmarks), computed once.
    """

    clip_id: int
    media: Media
    transcript: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.media.duration

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def require_audio(self) -> np.ndarray:
        if self.media.audio_error is not None:
            raise DataError(self.media.audio_error)
        if self.media.audio is None:
            raise NoSignal(self.media.audio_problem or "no audio")
        return self.media.audio

    def require_frames(self) -> tuple[np.ndarray, np.ndarray]:
        if self.media.frames is None or self.media.frame_times is None:
            raise NoSignal(self.media.video_problem or "no video frames")
        return self.media.frames, self.media.frame_times


def as_frame(value: Result) -> pd.DataFrame:
    """Any result as a DataFrame (a transcript as one ``text`` row, images as an ``image`` column)."""
    if isinstance(value, str):
        return pd.DataFrame({"text": [value]})
    if isinstance(value, dict):
        return pd.DataFrame({"image": list(value.values())}, index=pd.Index(list(value), name="frame"))
    return value


def frame_index(starts: np.ndarray, ends: np.ndarray) -> pd.MultiIndex:
    """The ``(start, end)`` index of a frame-level frame, from times in seconds."""
    return pd.MultiIndex.from_arrays(
        [
            pd.to_timedelta(np.asarray(starts, dtype=float), unit="s"),
            pd.to_timedelta(np.asarray(ends, dtype=float), unit="s"),
        ],
        names=["start", "end"],
    )


def frames_frame(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """A frame-level output: one row per frame, feature columns, ``(start, end)`` index."""
    return pd.DataFrame(np.asarray(values, dtype=np.float32), index=frame_index(starts, ends), columns=columns)


def clip_frame(values: np.ndarray, duration: float, columns: list[str]) -> pd.DataFrame:
    """A clip-level output: one row spanning the whole clip."""
    row = np.asarray(values, dtype=np.float32).reshape(1, -1)
    return pd.DataFrame(row, index=frame_index(np.zeros(1), np.full(1, duration)), columns=columns)


def quiet_transformers() -> None:
    """Silence transformers' weight-loading bars and warnings: one per worker would bury the progress bar."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def numbered(prefix: str, width: int) -> list[str]:
    """Feature names of an unnamed embedding: ``prefix_0 ... prefix_{width-1}``."""
    return [f"{prefix}_{i}" for i in range(width)]


class Extractor:
    """Base class of every extractor: parameters, declared inputs/outputs, lazy model loading.

    Subclasses set :attr:`name` (via :func:`register_extractor`), :attr:`needs` (``"audio"``,
    ``"video"``, ``"text"``), :attr:`packages` (whose versions go into the sidecar), implement
    :meth:`outputs` and :meth:`_process`, and load heavy models in :meth:`_load` (called once per
    worker process, on first use). :meth:`check` runs in the main process before any work is
    dispatched and must be cheap: it is where a missing model directory is reported.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    packages: ClassVar[tuple[str, ...]] = ()
    # Whether a masked clip is remembered across runs. False when the input may appear later
    # (a transcript that another extractor writes), so a resumed run looks again.
    remember_masked: ClassVar[bool] = True

    def __init__(self, *, model_dir: str | Path | None = None) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self._loaded = False

    # -- contract -----------------------------------------------------------------------------
    def outputs(self) -> tuple[Output, ...]:
        raise NotImplementedError

    @property
    def params(self) -> dict[str, Any]:
        """The settings that shape the features (saved in the sidecar; a change means a rerun)."""
        return {}

    def check(self) -> None:
        """Raise a clear error now if the extractor cannot run (e.g. its model is missing)."""

    def model_location(self) -> Path | None:
        """The local model directory the features depend on (hashed into the recipe); None for model-free ones."""
        return None

    def _load(self) -> None:
        """Load heavy models; called once per process before the first clip."""

    def _process(self, clip: ClipInput) -> dict[str, Result]:
        raise NotImplementedError

    # -- public API ---------------------------------------------------------------------------
    def process(self, clip: ClipInput) -> dict[str, Result]:
        """Features of one decoded clip, keyed by output name; raises :class:`NoSignal` to mask it."""
        self.ensure_loaded()
        return self._process(clip)

    def ensure_loaded(self) -> None:
        """Load the models now (otherwise done on the first clip)."""
        if not self._loaded:
            self._load()
            self._loaded = True

    def process_file(self, path: str | Path, *, fps: float = 5.0, clip_id: int = 0) -> dict[str, Result]:
        """Decode ``path`` and return its features (see :meth:`process`)."""
        media = decode(path, audio="audio" in self.needs, video="video" in self.needs, fps=fps)
        return self.process(ClipInput(clip_id, media))

    def process_files(self, paths: Iterable[str | Path], *, fps: float = 5.0) -> dict[str, pd.DataFrame]:
        """Features of several files, one DataFrame per output with ``file`` as the first index level.

        Masked files contribute no rows. Transcripts come back as a one-column (``text``) frame,
        images as an ``image`` column indexed by sampled-frame number.
        """
        parts: dict[str, list[pd.DataFrame]] = {o.name: [] for o in self.outputs()}
        for path in paths:
            try:
                results = self.process_file(path, fps=fps)
            except NoSignal:
                continue
            for name, value in results.items():
                parts[name].append(pd.concat({str(path): as_frame(value)}, names=["file"]))
        return {name: pd.concat(frames) for name, frames in parts.items() if frames}

    def describe(self) -> dict[str, Any]:
        """The sidecar record: name, parameters and the versions of the libraries that ran."""
        versions = {}
        for package in ("emimic", *self.packages):
            try:
                versions[package] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                versions[package] = None
        return {"extractor": self.name, "params": self.params, "versions": versions}


def register_extractor(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[type[Extractor]], type[Extractor]]:
    """Class decorator: make an :class:`Extractor` subclass available under ``name`` (and aliases).

    A built-in's name is also declared in :data:`emimic.registry.EXTRACTORS`, so listing and
    validating names needs no extractor module.
    """
    register = EXTRACTORS.register(name, aliases=aliases)

    def decorate(cls: type[Extractor]) -> type[Extractor]:
        if not (isinstance(cls, type) and issubclass(cls, Extractor)):
            raise TypeError(f"{cls!r} must subclass Extractor")
        cls.name = name
        return register(cls)

    return decorate


def resolve_name(name: str) -> str:
    """The registered name for ``name`` (case-insensitive, aliases allowed) or a ConfigError with a did-you-mean."""
    return EXTRACTORS.check(name)


def available_extractors() -> list[str]:
    return EXTRACTORS.names()


def build_extractor(
    name: str, *, model_dir: str | Path | None = None, options: Mapping[str, Any] | None = None
) -> Extractor:
    """Instantiate a registered extractor; ``options`` are its keyword parameters (e.g. ``layer=6``)."""
    cls = EXTRACTORS[name]
    try:
        return cls(model_dir=model_dir, **dict(options or {}))
    except TypeError as exc:
        raise ConfigError(f"extractor {cls.name!r}: invalid option(s) {dict(options or {})} ({exc}).") from None


def locate_model(
    extractor: str,
    *,
    model: str | Path | None,
    model_dir: Path | None,
    marker: str,
    example: str,
    fallback: Callable[[], Path | None] | None = None,
) -> Path:
    """Find an extractor's local model directory, or raise :class:`ModelNotFoundError` saying how to provide it.

    Looked up in order: the ``model`` option (a directory), ``<model_dir>/<extractor>``, then
    ``fallback()`` (a model shipped inside a Python package). ``marker`` is a file the directory
    must contain (``config.json`` for transformers, ``model.bin`` for CTranslate2).
    """
    candidates = []
    if model is not None:
        candidates.append(Path(model))
    elif model_dir is not None:
        candidates.append(model_dir / extractor)
    if model is None and fallback is not None:
        shipped = fallback()
        if shipped is not None:
            candidates.append(shipped)
    for candidate in candidates:
        if (candidate / marker).is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates) or "nothing (no --model-dir given)"
    raise ModelNotFoundError(
        f"extractor {extractor!r} needs a local model directory containing {marker}; tried {tried}. "
        f"Download it once on a machine with network, e.g. {example}, then pass --model-dir DIR "
        f"(the model in DIR/{extractor}) or --option {extractor}.model=PATH."
    )


class PretrainedExtractor(Extractor):
    """An extractor backed by a local pretrained model: the ``model`` option (a directory),
    ``<model_dir>/<name>``, or :meth:`shipped_model` (one a Python package ships), in that order.

    Subclasses set :attr:`model_example` (how to fetch the model once, for the error message) and
    :attr:`model_marker` (a file the directory must hold).
    """

    model_marker: ClassVar[str] = "config.json"
    model_example: ClassVar[str] = ""

    def __init__(self, *, model_dir: str | Path | None = None, model: str | None = None) -> None:
        super().__init__(model_dir=model_dir)
        self.model = model

    def shipped_model(self) -> Path | None:
        return None

    @property
    def params(self) -> dict[str, Any]:
        return {"model": str(self._model_path())}

    def _model_path(self) -> Path:
        return locate_model(
            self.name,
            model=self.model,
            model_dir=self.model_dir,
            marker=self.model_marker,
            example=self.model_example,
            fallback=self.shipped_model,
        )

    def check(self) -> None:
        self._model_path()

    def model_location(self) -> Path | None:
        return self._model_path()
