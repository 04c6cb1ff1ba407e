"""The worker side of extraction: decode one clip, run its pending extractors, save their files.

Every backend (:mod:`emimic.features.backends`) calls :func:`run_clip`, in-process, in a pool of
local processes or as a Ray task. Each worker process builds its extractors once (:func:`_runner`
caches them), so heavy models load once per worker, not once per clip. Workers write their clip's
files atomically and send back a small :class:`ClipReport`; only the main process keeps the books.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from emimic.errors import DataError, EmimicError, EmimicWarning, emimic_warnings_to
from emimic.features.base import ClipInput, Extractor, NoSignal, Output, build_extractor
from emimic.features.media import Media, decode
from emimic.io import TEMP_SUFFIX, default_mode, read_transcript, save_array, write_text
from emimic.labels import clip_stem

# About two hours of speech at 15 characters a second; a clip's transcript is far shorter.
MAX_TRANSCRIPT_CHARS = 100_000


@dataclass(frozen=True)
class ClipSources:
    """The inputs one clip offers: ``raw/`` video, ``audio/`` file, ``text/`` transcript (paths or None).

    Audio comes from the video when the clip has one (decoded with its frames), and from the audio
    file when the clip has no video or its video has no audio track; a transcript is also available
    when this run's ``whisper`` writes it.
    """

    video: str | None = None
    audio: str | None = None
    transcript: str | None = None

    def provides(self, *, transcribes: bool = False) -> frozenset[str]:
        """The ``needs`` this clip can meet; ``transcribes``: a transcript is made from its audio in this run."""
        kinds = {"video", "audio"} if self.video else {"audio"} if self.audio else set()
        if self.transcript or (transcribes and "audio" in kinds):
            kinds.add("text")
        return frozenset(kinds)

    def readable(self, needs: frozenset[str]) -> tuple[str, ...]:
        """Names of the files an extractor with ``needs`` may read: a new one (an ``audio/`` file beside a video
        without sound) can change what it finds."""
        kinds = {"video": (self.video,), "audio": (self.video, self.audio), "text": (self.transcript,)}
        return tuple(dict.fromkeys(Path(p).name for need in sorted(needs) for p in kinds[need] if p))

    def media(self, needs: set[str]) -> str | None:
        """The file to decode for ``needs`` (None when only the transcript is read)."""
        if not needs & {"audio", "video"}:
            return None
        return self.video or self.audio

    @property
    def shown(self) -> str:
        """The clip's main input, for error reports."""
        return str(self.video or self.audio or self.transcript)


# One unit of work: (clip id, its inputs, names of the extractors still to run on it).
Task = tuple[int, ClipSources, tuple[str, ...]]


@dataclass(frozen=True)
class ExtractSpec:
    """Everything a worker needs to rebuild the extractors: small, picklable, hashable."""

    root: str
    names: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()  # (extractor, JSON of its options), sorted
    model_dir: str | None = None
    fps: float = 5.0
    max_side: int | None = 640
    seed: int = 0
    threads: int = 0

    def build(self) -> list[Extractor]:
        options = {name: json.loads(text) for name, text in self.options}
        return [build_extractor(n, model_dir=self.model_dir, options=options.get(n)) for n in self.names]


@dataclass
class Outcome:
    extractor: str
    status: str
    reason: str = ""
    seconds: float = 0.0


@dataclass
class ClipReport:
    """What a worker sends back for one clip."""

    clip_id: int
    outcomes: list[Outcome]
    media_seconds: float = 0.0
    decode_seconds: float = 0.0
    columns: dict[str, list[str]] = field(default_factory=dict)  # feature names per output written
    warnings: list[EmimicWarning] = field(default_factory=list)  # raised meanwhile, for the command to show


class ClipRunner:
    """Runs the extractors of a spec on one clip at a time (one instance per worker process)."""

    def __init__(self, spec: ExtractSpec) -> None:
        self.spec = spec
        self.root = Path(spec.root)
        if spec.threads > 0:
            os.environ["OMP_NUM_THREADS"] = str(spec.threads)
        self.extractors = {e.name: e for e in spec.build()}
        self.uses_torch = any("torch" in e.packages for e in self.extractors.values())
        if spec.threads > 0 and self.uses_torch:
            import torch

            torch.set_num_threads(spec.threads)

    def run(self, clip_id: int, sources: ClipSources, pending: tuple[str, ...]) -> ClipReport:
        extractors = [self.extractors[name] for name in pending]
        needs = set().union(*(e.needs for e in extractors))
        # Seeded per clip, so a clip's features do not depend on which worker ran it or in what order.
        seed_everything(self.spec.seed + clip_id, torch=self.uses_torch)
        started = time.perf_counter()
        path = sources.media(needs)
        video = path is not None and "video" in needs and path == sources.video
        try:
            if path is not None:
                media = decode(
                    path, audio="audio" in needs, video=video, fps=self.spec.fps, max_side=self.spec.max_side
                )
                if "audio" in needs and media.audio is None and sources.audio and path != sources.audio:
                    take_audio(media, sources.audio)
            else:
                media = Media(path=Path(sources.shown), duration=0.0)
        except Exception as exc:  # a decoder fault on one file must not stop the other clips
            reason = decode_error(path, exc, frames=video)
            return ClipReport(clip_id, [Outcome(e.name, "failed", reason) for e in extractors])
        report = ClipReport(clip_id, [], media_seconds=media.duration, decode_seconds=time.perf_counter() - started)
        clip = ClipInput(clip_id, media)
        for extractor in extractors:
            report.outcomes.append(self._run_one(extractor, clip, report))
        return report

    def _load_transcript(self, clip: ClipInput) -> None:
        """Give ``clip`` its ``text/<id>.txt`` (once), if it has one."""
        path = self.root / "text" / f"{clip_stem(clip.clip_id)}.txt"
        if clip.transcript is None and path.is_file():
            clip.transcript = load_transcript(path)

    def _run_one(self, extractor: Extractor, clip: ClipInput, report: ClipReport) -> Outcome:
        started = time.perf_counter()
        try:
            if "text" in extractor.needs:  # read in here: an unreadable transcript fails this clip, not the batch
                self._load_transcript(clip)
            results = extractor.process(clip)
            numeric = [o for o in extractor.outputs() if o.level in ("frame", "clip")]
            arrays = {o.name: checked_array(o, results[o.name]) for o in numeric}
            stem = clip_stem(clip.clip_id)
            for output in extractor.outputs():
                value = results[output.name]
                if output.level == "text":
                    write_text(self.root / output.name / f"{stem}.txt", str(value))
                elif output.level == "images":
                    save_images(self.root / output.name / stem, value)
                else:
                    save_array(self.root / output.name / f"{stem}.npy", arrays[output.name])
                    report.columns[output.name] = [str(c) for c in value.columns]
        except NoSignal as exc:
            return Outcome(extractor.name, "masked", str(exc), time.perf_counter() - started)
        except EmimicError as exc:  # the input's fault: its sentence names the file and what to do
            return Outcome(extractor.name, "failed", str(exc), time.perf_counter() - started)
        except MemoryError:  # a long clip on a busy machine: the other clips may well fit
            reason = out_of_memory(clip.media.path, f"extracting {extractor.name!r} from it",
                                   frames="video" in extractor.needs)
            return Outcome(extractor.name, "failed", reason, time.perf_counter() - started)
        except Exception as exc:  # one clip's failure must not stop the batch
            return Outcome(extractor.name, "failed", unexpected(exc), time.perf_counter() - started)
        return Outcome(extractor.name, "done", "", time.perf_counter() - started)


def unexpected(exc: Exception) -> str:
    """An error no check foresaw, for errors.csv: its type, message and where it was raised."""
    where = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})"


def decode_error(path: str | Path | None, exc: Exception, *, frames: bool) -> str:
    """The sentence errors.csv gets when ``path`` cannot be decoded: the file's own, a lack of memory (``frames``:
    video frames were decoded, so --fps and --max-side matter), or one for a fault no check foresaw, worded so as
    not to blame a file that may be sound (the fault may be emimic's)."""
    if isinstance(exc, DataError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return out_of_memory(path, "decoding it", frames=frames)
    return f"{path}: emimic could not decode it ({unexpected(exc)}); if it plays elsewhere, report it with the file."


def out_of_memory(path: str | Path | None, doing: str, *, frames: bool) -> str:
    """The sentence errors.csv gets for a clip emimic ran out of memory ``doing`` (``"decoding it"``) on: what
    lowers the memory it takes, the frames held (``frames``: the step holds video frames) or the clips at once."""
    remedy = "lower --fps or --max-side, or run fewer --workers" if frames else "run fewer --workers"
    return f"{path}: emimic ran out of memory {doing}; {remedy}."


def take_audio(media: Media, audio_file: str) -> None:
    """Give a video without an audio track the audio of the clip's ``audio/`` file (which may lack one too, or
    be broken: then only the audio extractors fail)."""
    try:
        other = decode(audio_file, video=False)
    except Exception as exc:  # a fault of the audio file fails only the audio extractors
        media.audio_error = decode_error(audio_file, exc, frames=False)
        return
    media.audio, media.sample_rate = other.audio, other.sample_rate
    if other.audio is None:
        media.audio_problem = f"no audio track, nor in {other.path.name} ({other.audio_problem})"
    else:
        media.audio_problem = None


def load_transcript(path: Path) -> str:
    """The transcript in ``path``, refused when far longer than one clip's speech: the lexicon's sentiment analysis
    takes time quadratic in its length, so a wrong file in ``text/`` would stall the run for hours. A file larger
    than the limit at UTF-8's widest (4 bytes a character) is refused before it is read."""
    size = path.stat().st_size
    if size > 4 * MAX_TRANSCRIPT_CHARS:
        raise _too_long(path, f"{size:,} bytes")
    text = read_transcript(path)
    if len(text) > MAX_TRANSCRIPT_CHARS:
        raise _too_long(path, f"{len(text):,} characters")
    return text


def _too_long(path: Path, held: str) -> DataError:
    return DataError(
        f"{path}: holds {held}, more than the {MAX_TRANSCRIPT_CHARS:,} characters a clip's transcript may hold (about"
        " two hours of speech); check that it is this clip's transcript, or shorten it."
    )


def checked_array(output: Output, frame: pd.DataFrame) -> np.ndarray:
    """The array to save for one output, refusing what the loader would reject (empty, NaN/Inf)."""
    array = frame.to_numpy(dtype=np.float32)
    if len(array) == 0:
        raise NoSignal(f"{output.name}: no frames (clip too short)")
    if not np.isfinite(array).all():
        raise ValueError(f"{output.name}: {int((~np.isfinite(array)).sum())} NaN/Inf value(s)")
    return array[0] if output.level == "clip" else array


def save_images(folder: Path, images: dict[int, np.ndarray]) -> None:
    """Write RGB ``images`` as ``folder/<n>.jpg``, all or nothing: built in a hidden sibling, then renamed."""
    import cv2

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=TEMP_SUFFIX, dir=folder.parent))
    os.chmod(tmp, default_mode(directory=True))  # mkdtemp's 0700 would hide the crops from a lab's group
    try:
        for number, image in images.items():
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                raise ValueError(f"cannot encode frame {number} of {folder.name} as JPEG")
            (tmp / f"{number}.jpg").write_bytes(data.tobytes())
        shutil.rmtree(folder, ignore_errors=True)  # a re-extraction replaces the whole clip folder
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def seed_everything(seed: int, *, torch: bool) -> None:
    """Seed numpy (and torch when an extractor uses it), so any stochastic step repeats across runs."""
    np.random.seed(seed % 2**32)
    if torch:
        import torch as torch_module

        torch_module.manual_seed(seed)


_RUNNERS: dict[ExtractSpec, ClipRunner] = {}


def _runner(spec: ExtractSpec) -> ClipRunner:
    if spec not in _RUNNERS:
        _RUNNERS[spec] = ClipRunner(spec)
    return _RUNNERS[spec]


def run_clip(spec: ExtractSpec, clip_id: int, sources: ClipSources, pending: tuple[str, ...]) -> ClipReport:
    """The unit of work of every backend (in-process, process pool, Ray task). The emimic warnings it raises (an MP3
    read with silence for its damage) travel in its report: a worker would print them in Python's two-line format,
    and a Ray task not at all."""
    caught: list[EmimicWarning] = []
    with emimic_warnings_to(caught.append):
        report = _runner(spec).run(clip_id, sources, pending)
    report.warnings = caught
    return report
