"""The extraction driver: decode each clip once, run the requested extractors, save per-clip files.

Work is one task per clip, run in-process (``workers=1``), on a pool of local processes, or as
Ray tasks. Each worker process builds its extractors once (:func:`_runner` caches them), so heavy
models load once per worker, not once per clip. Workers write their clip's files atomically and
send back a small :class:`ClipReport`; the main process alone writes the bookkeeping under
``<root>/_extract/`` (a ledger of every clip × extractor outcome and the run's ``errors.csv``)
and one ``_extractor.json`` sidecar per output folder.

A run is resumable: a clip whose output files exist is skipped, and so is a clip an extractor
masked before with the same parameters (no audio, no face), as the ledger remembers it.
Failures are retried on the next run.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from emimic.data.layout import FEATURE_SIDECAR as SIDECAR
from emimic.errors import ConfigError, DataError, Interrupted
from emimic.features.base import EXTRACTORS, ClipInput, Extractor, NoSignal, Output, build_extractor, resolve_name
from emimic.features.media import Media, decode
from emimic.io import TEMP_SUFFIX, atomic_path, default_mode, remove_leftovers, save_array, write_text
from emimic.labels import clip_stem
from emimic.progress import progress_bar

if TYPE_CHECKING:
    from emimic.data.layout import DatasetLayout

STATE_DIR = "_extract"
LEDGER = "ledger.csv"
ERRORS = "errors.csv"
LEDGER_FIELDS = ("clip", "extractor", "status", "reason", "seconds", "params")
STATUSES = ("done", "skipped", "masked", "failed")
# Clips that lack what an extractor reads (no video or audio file for `egemaps`, no transcript
# for `text_emb`): counted in the summary, never sent to a worker, not recorded in the ledger.
NO_INPUT = "no input"


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


@dataclass(frozen=True)
class ClipSources:
    """The inputs one clip offers: ``raw/`` video, ``audio/`` file, ``text/`` transcript (paths or None).

    Audio comes from the video when the clip has one (decoded with its frames), else from the
    audio file; a transcript is also available when this run's ``whisper`` writes it.
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

    def media(self, needs: set[str]) -> str | None:
        """The file to decode for ``needs`` (None when only the transcript is read)."""
        if not needs & {"audio", "video"}:
            return None
        return self.video or self.audio

    @property
    def shown(self) -> str:
        """The clip's main input, for error reports."""
        return str(self.video or self.audio or self.transcript)


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
        try:
            if path is not None:
                video = "video" in needs and path == sources.video
                media = decode(
                    path, audio="audio" in needs, video=video, fps=self.spec.fps, max_side=self.spec.max_side
                )
            else:
                media = Media(path=Path(sources.shown), duration=0.0)
        except DataError as exc:
            return ClipReport(clip_id, [Outcome(e.name, "failed", str(exc)) for e in extractors])
        report = ClipReport(clip_id, [], media_seconds=media.duration, decode_seconds=time.perf_counter() - started)
        clip = ClipInput(clip_id, media)
        for extractor in extractors:
            if "text" in extractor.needs and clip.transcript is None:
                transcript = self.root / "text" / f"{clip_stem(clip_id)}.txt"
                if transcript.is_file():
                    clip.transcript = transcript.read_text(encoding="utf-8")
            report.outcomes.append(self._run_one(extractor, clip, report))
        return report

    def _run_one(self, extractor: Extractor, clip: ClipInput, report: ClipReport) -> Outcome:
        started = time.perf_counter()
        try:
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
        except Exception as exc:  # one clip's failure must not stop the batch
            where = traceback.extract_tb(exc.__traceback__)[-1]
            reason = f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})"
            return Outcome(extractor.name, "failed", reason, time.perf_counter() - started)
        return Outcome(extractor.name, "done", "", time.perf_counter() - started)


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
    """The unit of work of every backend (in-process, process pool, Ray task)."""
    return _runner(spec).run(clip_id, sources, pending)


# -- bookkeeping (main process only) ---------------------------------------------------------------


def params_digest(extractor: Extractor, spec: ExtractSpec) -> str:
    return hashlib.sha256(json.dumps(sidecar_params(extractor, spec), sort_keys=True).encode()).hexdigest()[:12]


def sidecar_params(extractor: Extractor, spec: ExtractSpec) -> dict[str, Any]:
    params = dict(extractor.params)
    if "video" in extractor.needs:
        params.update(fps=spec.fps, max_side=spec.max_side)
    return params


def read_ledger(path: Path) -> dict[tuple[int, str], dict[str, str]]:
    """Last recorded outcome per (clip, extractor)."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        # A run killed mid-write may leave a truncated last line: it lacks fields and is ignored.
        rows = [row for row in csv.DictReader(handle) if row.get("params") and row["clip"].isdigit()]
    return {(int(row["clip"]), row["extractor"]): row for row in rows}


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _check_sidecars(root: Path, extractors: list[Extractor], spec: ExtractSpec, overwrite: bool) -> None:
    for extractor in extractors:
        for output in extractor.outputs():
            path = root / output.name / SIDECAR
            if overwrite or not path.is_file():
                continue
            previous = json.loads(path.read_text(encoding="utf-8"))
            current = sidecar_params(extractor, spec)
            if previous.get("extractor") == extractor.name and previous.get("params") != current:
                raise ConfigError(
                    f"{output.name}/ was extracted with {previous.get('params')}, not {current};"
                    " pass --overwrite to re-extract every clip, or write to another dataset root."
                )


def _write_sidecars(
    root: Path, extractors: list[Extractor], spec: ExtractSpec, columns: dict[str, list[str]], *, missing_only=False
) -> None:
    for extractor in extractors:
        for output in extractor.outputs():
            path = root / output.name / SIDECAR
            if missing_only and path.is_file():
                continue
            previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            record = {
                **extractor.describe(),
                "params": sidecar_params(extractor, spec),
                "output": output.name,
                "level": output.level,
                "description": output.description,
                "feature_names": columns.get(output.name, previous.get("feature_names")),
            }
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


# -- backends ------------------------------------------------------------------------------------------

Task = tuple[int, ClipSources, tuple[str, ...]]


def _init_pool_worker(threads: int) -> None:
    # Before torch/opencv are imported in this process, so their pools take the per-worker share.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    # Ctrl-C reaches the whole process group: the main process alone stops the run (and finishes
    # the clips in flight), instead of every worker printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_local(spec: ExtractSpec, tasks: list[Task], workers: int) -> Iterator[ClipReport]:
    if workers <= 1:
        for task in tasks:
            yield run_clip(spec, *task)
        return
    # spawn, not fork: forked children would inherit half-initialised thread pools of torch/mediapipe.
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_init_pool_worker, initargs=(spec.threads,)
    )
    try:
        futures = {pool.submit(run_clip, spec, *task): task for task in tasks}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # a crashed worker fails its clips, not the run
                yield crashed(futures[future], exc)
    finally:
        # On Ctrl-C or an error, drop the queued clips instead of finishing them first.
        pool.shutdown(wait=True, cancel_futures=True)


def crashed(task: Task, exc: BaseException) -> ClipReport:
    """The report of a clip whose worker died (a native crash, out of memory)."""
    clip_id, _, pending = task
    reason = f"worker failed: {type(exc).__name__}: {exc}"
    return ClipReport(clip_id, [Outcome(name, "failed", reason) for name in pending])


RAY_PROBE_SECONDS = 5.0
_NO_CLUSTER = "start one with `ray start --head` or drop --ray-address"


def check_ray_address(address: str) -> None:
    """Fail in seconds when no Ray cluster answers at ``address``: ``ray.init`` itself retries for minutes.

    ``local`` starts a Ray here and ``auto`` finds a running one (Ray fails fast on that itself);
    ``HOST:PORT`` and ``ray://HOST:PORT`` are probed with one TCP connection.
    """
    if address in ("local", "auto"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not (sep and host and port.isdigit()):
        raise ConfigError(f"--ray-address {address!r} is not HOST:PORT, ray://HOST:PORT or auto (e.g. 10.0.0.5:6379).")
    try:
        socket.create_connection((host, int(port)), timeout=RAY_PROBE_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"--ray-address {address}: no Ray cluster answers there ({reason}); {_NO_CLUSTER}.") from None


def _run_ray(spec: ExtractSpec, tasks: list[Task], address: str, workers: int) -> Iterator[ClipReport]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        else:
            try:
                ray.init(address=address, log_to_driver=False)
            except ConnectionError as exc:
                raise ConfigError(f"--ray-address {address}: {' '.join(str(exc).split())} ({_NO_CLUSTER}).") from None
    try:
        remote = ray.remote(num_cpus=1)(run_clip)
        spec_ref = ray.put(spec)
        # A bounded window of tasks in flight keeps the driver's memory flat on 15k-clip corpora.
        window = max(2, 2 * int(ray.cluster_resources().get("CPU", workers)))
        queue = list(reversed(tasks))
        running: dict[Any, Task] = {}
        while queue or running:
            while queue and len(running) < window:
                task = queue.pop()
                running[remote.remote(spec_ref, *task)] = task
            [ready], _ = ray.wait(list(running), num_returns=1)
            task = running.pop(ready)
            try:
                yield ray.get(ready)
            except Exception as exc:  # a lost worker or node fails its clip, not the run
                yield crashed(task, exc)
    finally:
        if started_here:
            ray.shutdown()


# -- the library entry point ---------------------------------------------------------------------------


def _parse_names(modalities: Iterable[str] | str) -> tuple[str, ...]:
    items = modalities.split(",") if isinstance(modalities, str) else list(modalities)
    names = [resolve_name(item) for item in items if item.strip()]
    if not names:
        raise ConfigError("no extractor requested; pass --modalities, e.g. egemaps,whisper,text_emb.")
    # Registry order runs `whisper` before `text_emb`, so a transcript made in this run is embedded.
    return tuple(name for name in EXTRACTORS if name in names)


def finished_clips(layout: DatasetLayout, output: Output) -> set[int]:
    """The clips that already have ``output`` on disk."""
    if output.level == "text":
        return set(layout.transcripts)
    if output.level == "images":
        folder = layout.root / output.name
        return {int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()} if folder.is_dir() else set()
    # Any array file counts, so features shipped with the dataset (.pkl) are never duplicated.
    source = layout.modalities.get(output.name)
    return set(source.files) if source else set()


# What a clip must hold for each kind of extractor input (error messages).
INPUT_FILES = {"video": "raw/<id>.mp4", "audio": "raw/<id>.mp4 or audio/<id>.wav|mp3", "text": "text/<id>.txt"}


def writes_transcripts(extractors: list[Extractor]) -> bool:
    """Whether one of ``extractors`` writes transcripts, which the extractors after it can read."""
    return any(o.level == "text" for e in extractors for o in e.outputs())


def clip_sources(layout: DatasetLayout) -> dict[int, ClipSources]:
    """Every clip with at least one input: its video, audio file and transcript, where present."""
    videos, audio, transcripts = layout.videos, layout.audio_files, layout.transcripts
    return {
        clip_id: ClipSources(
            video=str(videos[clip_id]) if clip_id in videos else None,
            audio=str(audio[clip_id]) if clip_id in audio else None,
            transcript=str(transcripts[clip_id]) if clip_id in transcripts else None,
        )
        for clip_id in sorted({*videos, *audio, *transcripts})
    }


def _plan(
    layout: DatasetLayout,
    sources: dict[int, ClipSources],
    extractors: list[Extractor],
    digests: dict[str, str],
    ledger: dict[tuple[int, str], dict[str, str]],
    counts: dict[str, Counter],
    *,
    overwrite: bool,
) -> list[Task]:
    """The clips to process and, for each, the extractors still to run; counts the skipped ones and
    those without the extractor's input."""
    existing = {o.name: finished_clips(layout, o) for e in extractors for o in e.outputs()}
    transcribes = writes_transcripts(extractors)
    tasks: list[Task] = []
    for clip_id, clip in sources.items():
        provided = clip.provides(transcribes=transcribes)
        pending = []
        for extractor in extractors:
            if not extractor.needs <= provided:
                counts[extractor.name][NO_INPUT] += 1
                continue
            finished = not overwrite and all(clip_id in existing[o.name] for o in extractor.outputs())
            last = ledger.get((clip_id, extractor.name))
            remembered = (
                extractor.remember_masked
                and last is not None
                and last["status"] == "masked"
                and last["params"] == digests[extractor.name]
            )
            if finished or remembered:
                counts[extractor.name]["skipped"] += 1
            else:
                pending.append(extractor.name)
        if pending:
            tasks.append((clip_id, clip, tuple(pending)))
    return tasks


def extract(
    root: str | Path,
    modalities: Iterable[str] | str,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    model_dir: str | Path | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    fps: float = 5.0,
    max_side: int | None = 640,
    seed: int = 0,
    clips: Iterable[int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Extract ``modalities`` for every clip that has their inputs and return the run's summary.

    Each extractor runs on the clips that offer what it reads: video frames from
    ``<root>/raw/<id>.mp4``; audio from that video or, for a clip without one, from
    ``<root>/audio/<id>.{wav,mp3,flac}``; the transcript ``<root>/text/<id>.txt`` (or the one this
    run's ``whisper`` writes). A root with transcripts and no videos is enough for ``text_emb``.

    ``modalities`` are registered extractor names (``emimic.features.available_extractors()``);
    ``options`` maps an extractor name to its keyword parameters (``{"wav2vec2": {"layer": 6}}``).
    ``workers`` local processes run clips in parallel, or, with ``ray_address`` (an address or
    ``"local"`` for a local Ray of ``workers`` CPUs), Ray tasks do. ``clips`` restricts the run to
    those ids. ``progress`` shows a progress bar (stderr) over the clips to process.

    Returns one row per extractor: its output folders and how many clips were ``done``,
    ``skipped`` (already extracted), ``masked`` (nothing to extract, e.g. no audio track),
    ``failed`` (listed with their error in ``<root>/_extract/errors.csv``) or had ``no input``.
    """
    root = Path(root).expanduser().resolve()
    names = _parse_names(modalities)
    options = {resolve_name(k): v for k, v in (options or {}).items()}
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ConfigError(f"options given for {unknown}, which are not among the requested extractors {list(names)}.")
    if ray_address:
        check_ray_address(ray_address)
    workers = max(1, int(workers))
    spec = ExtractSpec(
        root=str(root),
        names=names,
        options=tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in options.items())),
        model_dir=str(Path(model_dir).expanduser().resolve()) if model_dir is not None else None,
        fps=float(fps),
        max_side=max_side,
        seed=int(seed),
        # Each Ray task reserves one CPU; local workers share this machine's cores; one in-process
        # worker leaves the libraries' own defaults (all cores).
        threads=1 if ray_address else max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0,
    )
    extractors = spec.build()
    for extractor in extractors:
        extractor.check()  # a missing model is one clear error now, not a failure per clip
    _check_sidecars(root, extractors, spec, overwrite)

    # Imported here: the emimic.data package pulls in torch, which `emimic --help` should not pay for.
    from emimic.data.layout import discover

    layout = discover(root)
    sources = clip_sources(layout)
    if clips is not None:
        wanted = set(int(c) for c in clips)
        missing = sorted(wanted - set(sources))
        if missing:
            raise DataError(f"{root}: no raw/ video, audio/ file or text/ transcript for clip id(s) {missing[:5]}.")
        sources = {i: s for i, s in sources.items() if i in wanted}
    transcribes = writes_transcripts(extractors)
    if not any(e.needs <= s.provides(transcribes=transcribes) for e in extractors for s in sources.values()):
        expected = " or ".join(dict.fromkeys(INPUT_FILES[need] for e in extractors for need in sorted(e.needs)))
        raise DataError(f"{root}: no clip has what {', '.join(names)} read{'s' if len(names) == 1 else ''}"
                        f" (expected {expected}).")

    state = root / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    for output in {o.name for e in extractors for o in e.outputs()}:
        remove_leftovers(root / output)  # temporary files of a clip a killed run was writing
    # Recorded before the first clip, so a killed first run still refuses to be resumed with other parameters.
    _write_sidecars(root, extractors, spec, {}, missing_only=True)
    digests = {e.name: params_digest(e, spec) for e in extractors}
    counts = {e.name: Counter() for e in extractors}
    ledger = {} if overwrite else read_ledger(state / LEDGER)
    tasks = _plan(layout, sources, extractors, digests, ledger, counts, overwrite=overwrite)

    reports = _run_ray(spec, tasks, ray_address, workers) if ray_address else _run_local(spec, tasks, workers)
    errors: list[dict[str, Any]] = []
    columns: dict[str, list[str]] = {}
    finished = 0
    try:
        # closing(): on Ctrl-C the pool stops (the clips in flight finish) before the message is printed.
        with (
            contextlib.closing(reports),
            open(state / LEDGER, "a", newline="", encoding="utf-8") as handle,
            progress_bar(progress) as bar,
        ):
            task = bar.add_task(f"extract {','.join(names)}", total=len(tasks))
            writer = csv.DictWriter(handle, fieldnames=LEDGER_FIELDS)
            if handle.tell() == 0:
                writer.writeheader()
            elif not _ends_with_newline(state / LEDGER):
                handle.write("\n")  # end the line a killed run left unfinished
            for report in reports:
                columns.update(report.columns)
                for outcome in report.outcomes:
                    counts[outcome.extractor][outcome.status] += 1
                    writer.writerow(
                        {
                            "clip": report.clip_id,
                            "extractor": outcome.extractor,
                            "status": outcome.status,
                            "reason": outcome.reason,
                            "seconds": f"{outcome.seconds:.3f}",
                            "params": digests[outcome.extractor],
                        }
                    )
                    if outcome.status == "failed":
                        errors.append(
                            {
                                "clip": report.clip_id,
                                "file": sources[report.clip_id].shown,
                                "extractor": outcome.extractor,
                                "error": outcome.reason,
                            }
                        )
                # A killed run keeps every line written so far: the ledger is what resumption reads.
                handle.flush()
                bar.advance(task)
                finished += 1
    except KeyboardInterrupt:
        raise Interrupted(
            f"extraction stopped with {finished} of {len(tasks)} clip(s) recorded; the features of every finished"
            f" clip are kept in {root}; run the same command to resume."
        ) from None

    _write_sidecars(root, extractors, spec, columns)
    with atomic_path(state / ERRORS) as tmp:
        pd.DataFrame(errors, columns=["clip", "file", "extractor", "error"]).to_csv(tmp, index=False)
    summary = pd.DataFrame(
        [
            {
                "extractor": e.name,
                "outputs": ",".join(o.name for o in e.outputs()),
                **{status: counts[e.name][status] for status in (*STATUSES, NO_INPUT)},
            }
            for e in extractors
        ]
    ).set_index("extractor")
    summary.attrs.update(errors=str(state / ERRORS), clips=len(sources), tasks=len(tasks))
    return summary
