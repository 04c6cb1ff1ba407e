"""The books of an extraction root, kept by the main process alone under ``<root>/_extract/``.

``ledger.csv`` appends one row per clip × extractor outcome (``done``, ``skipped``, ``masked``,
``failed``) under a key of the parameters it ran with and the names of the input files it could read
(:func:`emimic.features.plan.ledger_key`): resumption reads it to skip clips an extractor masked
before with the same parameters and input file names. ``errors.csv`` lists the failures of each extractor's last run.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from emimic.features.runner import ClipReport
from emimic.io import atomic_path
from emimic.labels import read_clip_id

STATE_DIR = "_extract"
LEDGER = "ledger.csv"
ERRORS = "errors.csv"
LEDGER_FIELDS = ("clip", "extractor", "status", "reason", "seconds", "params")
ERROR_FIELDS = ("clip", "file", "extractor", "error")
STATUSES = ("done", "skipped", "masked", "failed")


def read_ledger(path: Path) -> dict[tuple[int, str], dict[str, str]]:
    """Last recorded outcome per (clip, extractor)."""
    if not path.is_file():
        return {}
    outcomes: dict[tuple[int, str], dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            clip_id = read_clip_id(row["clip"] or "")
            # A run killed mid-write may leave a truncated last line: it lacks fields and is ignored.
            if row.get("params") and clip_id is not None:
                outcomes[clip_id, row["extractor"]] = row
    return outcomes


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


class LedgerWriter:
    """Appends each clip's outcomes to the ledger as they arrive and collects the failures."""

    def __init__(self, handle: BinaryIO, key: Callable[[int, str], str], inputs: dict[int, str]) -> None:
        self._handle, self._key, self._inputs = handle, key, inputs
        self.errors: list[dict[str, Any]] = []

    def record(self, report: ClipReport) -> None:
        """Append ``report``'s outcomes; one done with a warning (a damaged MP3 read with silence) has it as its
        reason, the one record of it a resumed run, which skips the clip, keeps."""
        rows = io.StringIO()
        writer = csv.DictWriter(rows, fieldnames=LEDGER_FIELDS)
        warned = " ".join(f"warning: {warning}" for warning in report.warnings)
        for outcome in report.outcomes:
            writer.writerow(
                {
                    "clip": report.clip_id,
                    "extractor": outcome.extractor,
                    "status": outcome.status,
                    "reason": outcome.reason or warned,
                    "seconds": f"{outcome.seconds:.3f}",
                    "params": self._key(report.clip_id, outcome.extractor),
                }
            )
            if outcome.status == "failed":
                self.errors.append(
                    {
                        "clip": report.clip_id,
                        "file": self._inputs[report.clip_id],
                        "extractor": outcome.extractor,
                        "error": outcome.reason,
                    }
                )
        # One write of whole lines to a file opened for appending: the lines of an extract of other modalities into
        # the same root, at the same time, land before or after them, never inside. A killed run keeps every line
        # written so far: the ledger is what resumption reads.
        write_all(self._handle, rows.getvalue().encode("utf-8"))


def write_all(handle: BinaryIO, data: bytes) -> None:
    """Write all of ``data`` to the unbuffered ``handle``: one write in practice; one cut short (a signal, a disk
    filling up) is carried on rather than leaving a line cut."""
    rest = memoryview(data)
    while rest:
        rest = rest[handle.write(rest):]


def start_ledger(path: Path) -> None:
    """Make ``path`` a ledger to append lines to: its header written when new, a killed run's last line ended. Called
    by one extract at a time (two starting together on a new root wrote the header twice)."""
    with open(path, "ab", buffering=0) as handle:
        if handle.tell() == 0:
            write_all(handle, (",".join(LEDGER_FIELDS) + "\r\n").encode("utf-8"))
        elif not _ends_with_newline(path):
            write_all(handle, b"\n")  # end the line a killed run left unfinished


@contextmanager
def open_ledger(path: Path, key: Callable[[int, str], str], inputs: dict[int, str]) -> Iterator[LedgerWriter]:
    """A :class:`LedgerWriter` appending to the ledger ``path`` (see :func:`start_ledger`); ``key(clip, extractor)``
    is what an outcome is recorded under, ``inputs`` names each clip's main input file for the error list."""
    with open(path, "ab", buffering=0) as handle:
        yield LedgerWriter(handle, key, inputs)


def write_errors(path: Path, errors: list[dict[str, Any]], *, extractors: Iterable[str]) -> None:
    """Replace the failures of ``extractors`` in ``path`` by ``errors`` (their run's), keeping those of the others:
    the list stays whole when other modalities were extracted into the same root in another command."""
    ran = set(extractors)
    kept = read_errors(path)
    kept = kept[~kept["extractor"].isin(ran)]
    parts = [part for part in (kept, pd.DataFrame(errors, columns=list(ERROR_FIELDS))) if len(part)]
    merged = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(ERROR_FIELDS))
    with atomic_path(path) as tmp:
        merged.to_csv(tmp, index=False)


def read_errors(path: Path) -> pd.DataFrame:
    """The failures listed in ``path`` (none when it does not exist)."""
    if not path.is_file():
        return pd.DataFrame(columns=list(ERROR_FIELDS))
    return pd.read_csv(path, dtype={"clip": "int64"}, keep_default_na=False)
