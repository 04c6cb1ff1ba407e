"""The extraction driver: plan the work, run it on a backend, keep the books.

A run is resumable: a clip whose output files exist is skipped, and so is a clip an extractor
masked before with the same parameters (no audio, no face), as the ledger remembers it.
Failures are retried on the next run. The parts live in their own modules:
:mod:`~emimic.features.plan` (what to do), :mod:`~emimic.features.runner` (one clip, in a worker),
:mod:`~emimic.features.backends` (in-process, process pool, Ray), :mod:`~emimic.features.ledger`
(``<root>/_extract/``) and :mod:`~emimic.features.recipe` (the ``_extractor.json`` sidecars).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from emimic.errors import ConfigError, DataError, EmimicWarning, Interrupted
from emimic.features.backends import check_ray_address, run_local, run_ray
from emimic.features.base import Extractor, resolve_name
from emimic.features.ledger import (
    ERRORS,
    LEDGER,
    STATE_DIR,
    STATUSES,
    open_ledger,
    read_ledger,
    start_ledger,
    write_errors,
)
from emimic.features.plan import (
    INPUT_FILES,
    NO_INPUT,
    clip_sources,
    ledger_key,
    parse_names,
    plan_tasks,
    skipped_media,
    writes_transcripts,
)
from emimic.features.recipe import check_sidecars, params_digest, write_sidecars
from emimic.features.runner import ClipSources, ExtractSpec
from emimic.io import remove_leftovers
from emimic.outputs import Hold, exclusive_outputs
from emimic.progress import progress_bar

if TYPE_CHECKING:
    from emimic.data.layout import DatasetLayout

EXTRACT_HOLD = Hold("extract", advice="wait until it ends, or extract other modalities meanwhile")
# The ledger's start and errors.csv are written in milliseconds by each extract that starts or ends: another one
# waits for that.
RECORDS_HOLD = Hold("extract", wait=60.0, busy="another emimic extract is writing its records (ledger.csv,"
                    " errors.csv) into this folder", advice="run this command again")


def make_spec(
    root: Path,
    modalities: Iterable[str] | str,
    options: Mapping[str, dict[str, Any]] | None,
    *,
    model_dir: str | Path | None,
    fps: float,
    max_side: int | None,
    seed: int,
    workers: int = 1,
    ray_address: str | None = None,
) -> ExtractSpec:
    """The validated :class:`ExtractSpec` of a run (see :func:`extract` for the arguments)."""
    names = parse_names(modalities)
    options = {resolve_name(k): v for k, v in (options or {}).items()}
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ConfigError(f"options given for {unknown}, which are not among the requested extractors {list(names)}.")
    if ray_address:
        check_ray_address(ray_address)
    workers = max(1, int(workers))
    return ExtractSpec(
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
    videos: Mapping[int, Path] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Extract ``modalities`` for every clip that has their inputs and return the run's summary.

    Each extractor runs on the clips that offer what it reads: video frames from
    ``<root>/raw/<id>.mp4``; audio from that video or, for a clip without one or without sound in it,
    from ``<root>/audio/<id>.{wav,mp3,flac,m4a}``; the transcript ``<root>/text/<id>.txt`` (or the one this
    run's ``whisper`` writes). A root with transcripts and no videos is enough for ``text_emb``.

    ``modalities`` are registered extractor names (``emimic.features.available_extractors()``);
    ``options`` maps an extractor name to its keyword parameters (``{"wav2vec2": {"layer": 6}}``).
    ``workers`` local processes run clips in parallel, or, with ``ray_address`` (an address or
    ``"local"`` for a local Ray of ``workers`` CPUs), Ray tasks do. ``clips`` restricts the run to
    those ids. ``videos`` (clip id → file) replaces ``<root>/raw/``: the features of files kept
    elsewhere go into ``root`` (``emimic infer`` extracts a user's videos into a cache folder so).
    ``progress`` shows a progress bar (stderr) over the clips to process.

    Returns one row per extractor: its output folders and how many clips were ``done``,
    ``skipped`` (already extracted), ``masked`` (nothing to extract, e.g. no audio track),
    ``failed`` (listed with their error in ``<root>/_extract/errors.csv``) or had ``no input``.
    """
    root = Path(root).expanduser().resolve()
    spec = make_spec(
        root,
        modalities,
        options,
        model_dir=model_dir,
        fps=fps,
        max_side=max_side,
        seed=seed,
        workers=workers,
        ray_address=ray_address,
    )
    names = spec.names
    workers = max(1, int(workers))
    extractors = spec.build()
    for extractor in extractors:
        extractor.check()  # a missing model is one clear error now, not a failure per clip
    check_sidecars(root, extractors, spec, overwrite)

    # Imported here: the emimic.data package pulls in torch, which `emimic --help` should not pay for.
    from emimic.data.layout import discover

    layout = discover(root)
    if videos is None:
        sources = clip_sources(layout)
        for sentence in skipped_media(layout):
            warnings.warn(EmimicWarning(sentence), stacklevel=2)
    else:
        sources = {i: ClipSources(video=str(p)) for i, p in videos.items()}
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

    # One extract per output folder at a time: a second one would delete the temporary files the first is writing,
    # and both would write its sidecar. Other modalities may be extracted into the same root meanwhile.
    outputs = sorted({o.name for e in extractors for o in e.outputs()})
    with exclusive_outputs([root / name for name in outputs], EXTRACT_HOLD):
        return _extract_held(root, spec, extractors, layout, sources, outputs, workers=workers,
                             ray_address=ray_address, overwrite=overwrite, progress=progress)


def start_records(state: Path) -> None:
    """Make the folder ``state`` of an extraction's records, and its ledger, held: two extracts of other modalities
    may start together on a new root."""
    state.mkdir(parents=True, exist_ok=True)
    with exclusive_outputs([state], RECORDS_HOLD):
        start_ledger(state / LEDGER)


def _extract_held(root: Path, spec: ExtractSpec, extractors: list[Extractor], layout: DatasetLayout,
                  sources: dict[int, ClipSources], outputs: list[str], *, workers: int, ray_address: str | None,
                  overwrite: bool, progress: bool) -> pd.DataFrame:
    """The work of :func:`extract` once its output folders are held by this process (its workers take no lock)."""
    names = spec.names
    state = root / STATE_DIR
    start_records(state)
    for output in outputs:
        remove_leftovers(root / output)  # temporary files of a clip a killed run was writing
    # Recorded before the first clip, so a killed first run still refuses to be resumed with other parameters.
    write_sidecars(root, extractors, spec, {}, missing_only=True)
    digests = {e.name: params_digest(e, spec) for e in extractors}
    counts = {e.name: Counter() for e in extractors}
    ledger = {} if overwrite else read_ledger(state / LEDGER)
    tasks = plan_tasks(layout, sources, extractors, digests, ledger, counts, overwrite=overwrite)
    needs = {e.name: e.needs for e in extractors}

    def key(clip_id: int, name: str) -> str:
        return ledger_key(digests[name], sources[clip_id], needs[name])

    reports = run_ray(spec, tasks, ray_address, workers) if ray_address else run_local(spec, tasks, workers)
    columns: dict[str, list[str]] = {}
    finished = 0
    try:
        # closing(): on Ctrl-C the pool stops (the clips in flight finish) before the message is printed.
        with (
            contextlib.closing(reports),
            open_ledger(state / LEDGER, key, {i: s.shown for i, s in sources.items()}) as ledger_writer,
            progress_bar(progress) as bar,
        ):
            task = bar.add_task(f"extract {','.join(names)}", total=len(tasks))
            for report in reports:
                for warning in report.warnings:  # shown above the progress bar
                    warnings.warn(warning, stacklevel=2)
                columns.update(report.columns)
                for outcome in report.outcomes:
                    counts[outcome.extractor][outcome.status] += 1
                ledger_writer.record(report)
                bar.advance(task)
                finished += 1
    except KeyboardInterrupt:
        raise Interrupted(
            f"extraction stopped with {finished} of {len(tasks)} clip(s) recorded; the features of every finished"
            f" clip are kept in {root}; run the same command to resume."
        ) from None

    write_sidecars(root, extractors, spec, columns)
    with exclusive_outputs([state], RECORDS_HOLD):  # the errors of other extractors' runs are kept
        write_errors(state / ERRORS, ledger_writer.errors, extractors=names)
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
