"""Challenge submissions: ``Filename`` (integer) + the six emotions in the official order, one row
per clip, sorted by ``Filename``, values in [0, 1].

:func:`write_submission` validates before writing (atomically), so a file on disk is always a
valid submission for the split it was made for.

Example::

    frame = to_submission(ids, preds)                 # clips predictions to [0, 1], sorts
    write_submission(frame, "pred.csv", expected_ids=ids)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from emimic.errors import DataError
from emimic.io import atomic_path
from emimic.labels import EMOTIONS, ID_COLUMN

COLUMNS: tuple[str, ...] = (ID_COLUMN, *EMOTIONS)


def to_submission(ids: Sequence[int] | np.ndarray, preds: np.ndarray) -> pd.DataFrame:
    """A submission frame from clip ids and ``(N, 6)`` predictions: clipped to [0, 1], sorted by id."""
    preds = np.asarray(preds, dtype=np.float64)
    ids = np.asarray(ids, dtype=np.int64)
    if preds.shape != (len(ids), len(EMOTIONS)):
        raise ValueError(f"predictions must have shape {(len(ids), len(EMOTIONS))}, got {preds.shape}")
    frame = pd.DataFrame(np.clip(preds, 0.0, 1.0), columns=list(EMOTIONS))
    frame.insert(0, ID_COLUMN, ids)
    return frame.sort_values(ID_COLUMN, kind="stable").reset_index(drop=True)


def _preview(values: Sequence[int]) -> str:
    values = sorted(int(v) for v in values)
    return ", ".join(map(str, values[:5])) + (f" ... ({len(values)} in all)" if len(values) > 5 else "")


def validate_submission(frame: pd.DataFrame, *, expected_ids: Sequence[int] | np.ndarray | None = None) -> None:
    """Raise a :class:`DataError` naming the first problem: columns, ids, ordering, NaN or range."""
    if tuple(frame.columns) != COLUMNS:
        raise DataError(f"submission columns are {list(frame.columns)}; expected {list(COLUMNS)} in that order.")
    ids = frame[ID_COLUMN]
    if not pd.api.types.is_integer_dtype(ids):
        raise DataError(f"submission {ID_COLUMN} must be integers, not {ids.dtype}.")
    if ids.duplicated().any():
        raise DataError(f"submission has duplicate {ID_COLUMN} id(s): {_preview(ids[ids.duplicated()].unique())}.")
    if not ids.is_monotonic_increasing:
        raise DataError(f"submission rows must be sorted by {ID_COLUMN}.")
    if expected_ids is not None:
        got, want = set(ids.tolist()), {int(i) for i in expected_ids}
        if want - got:
            raise DataError(f"submission lacks {len(want - got)} clip(s) of the split: {_preview(want - got)}.")
        if got - want:
            raise DataError(f"submission has {len(got - want)} clip(s) not in the split: {_preview(got - want)}.")
    values = frame[list(EMOTIONS)].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(x) for x in np.argwhere(bad)[0])
        raise DataError(f"submission {EMOTIONS[col]!r} for {ID_COLUMN} {ids.iloc[row]} is {values[row, col]}.")
    outside = (values < 0.0) | (values > 1.0)
    if outside.any():
        row, col = (int(x) for x in np.argwhere(outside)[0])
        raise DataError(
            f"submission {EMOTIONS[col]!r} for {ID_COLUMN} {ids.iloc[row]} is {values[row, col]}, outside [0, 1]."
        )


def write_submission(
    frame: pd.DataFrame, path: str | Path, *, expected_ids: Sequence[int] | np.ndarray | None = None
) -> Path:
    """Validate ``frame`` and write it atomically as CSV; returns the path."""
    validate_submission(frame, expected_ids=expected_ids)
    path = Path(path)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
    return path
