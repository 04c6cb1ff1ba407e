"""What an extraction run has to do: which extractors, and which clips still need each of them.

A clip is skipped for an extractor when all its outputs exist on disk, or when the ledger says
the extractor masked it before with the same parameters (no audio, no face) and the input cannot
appear later. Everything else, including past failures, is planned again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from emimic.errors import ConfigError
from emimic.features.base import EXTRACTORS, Extractor, Output, resolve_name
from emimic.features.runner import Task

if TYPE_CHECKING:
    from emimic.data.layout import DatasetLayout


def parse_names(modalities: Iterable[str] | str) -> tuple[str, ...]:
    """Registered extractor names from a list or a comma-separated string, in registry (= run) order."""
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


def plan_tasks(
    layout: DatasetLayout,
    videos: dict[int, Path],
    extractors: list[Extractor],
    digests: dict[str, str],
    ledger: dict[tuple[int, str], dict[str, str]],
    counts: dict[str, Counter],
    *,
    overwrite: bool,
) -> list[Task]:
    """The clips to process and, for each, the extractors still to run; counts the skipped ones."""
    existing = {o.name: finished_clips(layout, o) for e in extractors for o in e.outputs()}
    tasks: list[Task] = []
    for clip_id in sorted(videos):
        pending = []
        for extractor in extractors:
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
            tasks.append((clip_id, str(videos[clip_id]), tuple(pending)))
    return tasks
