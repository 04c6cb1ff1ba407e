"""What an extraction run has to do: which extractors, and which clips still need each of them.

A clip is skipped for an extractor when all its outputs exist on disk, or when the ledger says
the extractor masked it before with the same parameters and the same input file names (no audio,
no face), for an input that cannot appear later. Everything else, including past failures and a
clip given a new input file since (an ``audio/`` file beside a video without sound), is planned again.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable

from emimic.data.layout import AUDIO_DIR, MEDIA_SUFFIXES, VIDEO_DIR, DatasetLayout
from emimic.errors import ConfigError
from emimic.features.base import EXTRACTORS, Extractor, Output, resolve_name
from emimic.features.media import dangling_links, unread_suffix
from emimic.features.runner import ClipSources, Task
from emimic.labels import is_clip_stem, shortlist

# Clips that lack what an extractor reads (no video or audio file for `egemaps`, no transcript
# for `text_emb`): counted in the summary, never sent to a worker, not recorded in the ledger.
NO_INPUT = "no input"
# What a clip must hold for each kind of extractor input (error messages).
INPUT_FILES = {"video": "raw/<id>.mp4", "audio": "raw/<id>.mp4 or audio/<id>.wav|mp3|flac|m4a", "text": "text/<id>.txt"}


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
        if not folder.is_dir():
            return set()
        return {int(p.name) for p in folder.iterdir() if p.is_dir() and is_clip_stem(p.name)}
    # Any array file counts, so features shipped with the dataset (.pkl) are never duplicated.
    source = layout.modalities.get(output.name)
    return set(source.files) if source else set()


# A recording in a format not read, per media folder, for the conversion the unread-suffix sentence suggests.
MEDIA_EXAMPLES = {VIDEO_DIR: "00001.3gp", AUDIO_DIR: "00001.ogg"}
# Why a file in raw/ or audio/ is not extracted, with what to do about it (see skipped_media).
_SKIPPED = {
    "name": "not named by a clip id; rename each to its zero-padded id, e.g. 00001.mp4",
    "duplicate": "another file in the folder has the same clip id; keep one of them",
    "outside": "a link leaving the dataset root, which emimic does not follow; copy the file in, or make the whole"
    " folder a link",
    "folder": "a folder; emimic reads the files directly in {folder}/, not in folders inside it",
}


def skipped_media(layout: DatasetLayout) -> list[str]:
    """One sentence per folder and reason naming the ``raw/`` and ``audio/`` entries that discovery left out, which
    would otherwise vanish from the run without a word."""
    sentences = []
    for name, example in MEDIA_EXAMPLES.items():
        scan = layout.media_scans.get(name)
        if scan is None:
            continue
        skipped = {
            "name": scan.stray,
            "duplicate": [left_out for _, left_out in scan.duplicates],
            "outside": scan.escaping,
            "folder": scan.folders,
        }
        folder = layout.root / name
        for reason, paths in skipped.items():
            if paths:
                names = shortlist(sorted(repr(p.name) for p in paths))
                sentences.append(f"{folder}/: {names} not extracted: {_SKIPPED[reason].format(folder=name)}.")
        if scan.other_suffix:
            sentences.append(unread_suffix(folder, [p.name for p in scan.other_suffix], MEDIA_SUFFIXES[name],
                                           "not extracted", example=example))
        if scan.dangling:
            sentences.append(dangling_links(scan.dangling, "not extracted"))
    return sentences


def ledger_key(digest: str, clip: ClipSources, needs: frozenset[str]) -> str:
    """What the ledger records an outcome under: the extractor's parameter ``digest`` and the names of the files it
    could read, so a mask is forgotten when the clip gains or loses an input file. A file replaced under the same
    name keeps the mask (its content is not read here): ``--overwrite`` extracts it again."""
    files = "\0".join(clip.readable(needs))
    return hashlib.sha256(f"{digest}\0{files}".encode()).hexdigest()[:12]


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


def plan_tasks(
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
                and last["params"] == ledger_key(digests[extractor.name], clip, extractor.needs)
            )
            if finished or remembered:
                counts[extractor.name]["skipped"] += 1
            else:
                pending.append(extractor.name)
        if pending:
            tasks.append((clip_id, clip, tuple(pending)))
    return tasks
