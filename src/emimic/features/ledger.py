"""The books of an extraction root, kept by the main process alone under ``<root>/_extract/``.

``ledger.csv`` appends one row per clip × extractor outcome (``done``, ``skipped``, ``masked``,
``failed``) under a key of the parameters it ran with and the names of the input files it could read
(:func:`emimic.features.plan.ledger_key`): resumption reads it to skip clips an extractor masked
before with the same parameters and input file names. ``errors.csv`` lists the failures of the last run.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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

    def __init__(self, handle: Any, key: Callable[[int, str], str], inputs: dict[int, str]) -> None:
        self._handle, self._key, self._inputs = handle, key, inputs
        self._writer = csv.DictWriter(handle, fieldnames=LEDGER_FIELDS)
        self.errors: list[dict[str, Any]] = []

    def record(self, report: ClipReport) -> None:
        for outcome in report.outcomes:
            self._writer.writerow(
                {
                    "clip": report.clip_id,
                    "extractor": outcome.extractor,
                    "status": outcome.status,
                    "reason": outcome.reason,
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
        # A killed run keeps every line written so far: the ledger is what resumption reads.
        self._handle.flush()


@contextmanager
def open_ledger(path: Path, key: Callable[[int, str], str], inputs: dict[int, str]) -> Iterator[LedgerWriter]:
    """A :class:`LedgerWriter` appending to ``path`` (header written once, a killed run's last line ended);
    ``key(clip, extractor)`` is what an outcome is recorded under, ``inputs`` names each clip's main input file
    for the error list."""
    with open(path, "a", newline="", encoding="utf-8") as handle:
        if handle.tell() == 0:
            csv.DictWriter(handle, fieldnames=LEDGER_FIELDS).writeheader()
        elif not _ends_with_newline(path):
            handle.write("\n")  # end the line a killed run left unfinished
        yield LedgerWriter(handle, key, inputs)


def write_errors(path: Path, errors: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(errors, columns=list(ERROR_FIELDS)).to_csv(tmp, index=False)
