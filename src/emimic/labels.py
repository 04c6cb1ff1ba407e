"""The six EMI emotions and the split CSVs that carry them.

A split CSV has the columns ``Filename`` + :data:`EMOTIONS`. ``Filename`` is an integer clip id;
published files also write it as ``10.0`` or ``00010``: :func:`read_clip_id` is the one rule for an id,
wherever one is read (split CSVs, one-pickle modality keys, the extraction ledger).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emimic.defaults import GROUP_COLUMNS
from emimic.errors import DataError, EmimicWarning
from emimic.io import atomic_path

EMOTIONS: tuple[str, ...] = (
    "Admiration",
    "Amusement",
    "Determination",
    "Empathic Pain",
    "Excitement",
    "Joy",
)
ID_COLUMN = "Filename"
ID_WIDTH = 5
# Optional columns a split CSV may carry besides the labels: the group columns (emimic.defaults, which the help
# text reads without numpy) and ``raters``, the number of raters averaged into each label (sample weighting).
RATERS_COLUMN = "raters"
META_COLUMNS: tuple[str, ...] = (*GROUP_COLUMNS, RATERS_COLUMN)
# A rater count more than this many times the median of its split CSV is named in a warning, as it may be a typo
# (100000 for 10): with loss.sample_weights: sqrt_raters it would weigh as sqrt(100) = 10 typical clips or more, and
# one such clip among 90 carried more than half of the loss. Not refused: a real corpus may rate most clips once and
# a few by a panel of 150.
RATERS_MAX_RATIO = 100


class RatersWarning(EmimicWarning):
    """A rater count far above its split CSV's median, which may be a typo."""


# A column whose population standard deviation (ddof 0) is at most this is constant: its PCC is undefined, and the
# metric (emimic.metrics) scores it 0. Labels and predictions, the warnings and the metric decide it alike, through
# is_constant_variance, so the column a warning names is exactly the one scored 0. Not smaller: a model computes in
# float32, whose steps are 6e-8 near 0.5 and 1.2e-7 near 1, and the same output for every clip (clips without
# features, a collapsed model) differs by a few steps from batch to batch; 1e-9 scored that rounding noise as a PCC.
# Labels lie in [0, 1], where a spread of 1e-6 carries no rating.
CONSTANT_STD = 1e-6


def is_constant_variance(variance: Any) -> Any:
    """Whether a column of this population variance is constant (elementwise on arrays and tensors)."""
    return variance <= CONSTANT_STD**2


def constant_label_columns(values: np.ndarray) -> np.ndarray:
    """``(D,)`` whether each column of ``(N, D)`` labels or predictions (N >= 1) is constant, as the metric decides
    (features have their own rule, against float32 rounding: :func:`emimic.data.store.constant_columns`)."""
    return is_constant_variance(np.var(values, axis=0))


def constant_emotions(labels: pd.DataFrame) -> list[str]:
    """The emotions whose labels are constant over the clips of ``labels`` (a split with its six columns)."""
    if len(labels) == 0 or not set(EMOTIONS) <= set(labels.columns):
        return []
    constant = constant_label_columns(labels[list(EMOTIONS)].to_numpy(dtype=np.float64))
    return [emotion for emotion, flag in zip(EMOTIONS, constant, strict=True) if flag]


def view_prefix(view: str) -> str:
    """What every message about the clips of a dataset ``view`` begins with: ``fold 2: `` in a CV fold's (``"fold
    2"``), nothing in the corpus itself; so the same sentence of several folds (printed once per command) says which
    fold it is about."""
    return f"{view}: " if view else ""


def constant_labels_sentence(labels: pd.DataFrame, *, root: str | Path, split: str, scored: bool,
                             where: str = "") -> str | None:
    """What every command says of a split with constant label columns (None: there are none). On a ``scored`` split
    their PCC is undefined (the metric counts it as 0 in the mean PCC); on one trained on, nothing of them can be
    learnt but that value. ``where``: the :func:`view_prefix` of the split's view."""
    constant = constant_emotions(labels)
    if not constant:
        return None
    values = ", ".join(f"{e} {labels[e].iloc[0]:g}" for e in constant)
    one = len(constant) == 1
    consequence = ("{their} PCC is undefined: it is shown as 0 and counts as 0 in the mean PCC" if scored else
                   "the model can learn nothing of {them} but that value")
    return (f"{where}{root}: the labels of {shortlist(constant)} {'are' if one else 'are each'} constant over the"
            f" {len(labels)} clips of the {split!r} split ({values}), so "
            + consequence.format(them="it" if one else "them", their="its" if one else "their") + ".")


def clip_stem(clip_id: int) -> str:
    """The on-disk name of a clip: its integer id zero-padded to five digits."""
    return str(int(clip_id)).zfill(ID_WIDTH)


def shortlist(items: Iterable[object], *, shown: int = 10) -> str:
    """``"3, 6, 9"`` for a few clip ids or file names; past ``shown`` of them the rest is a count
    (``"3, 6, ..., 30 and 12 more"``)."""
    listed = [str(item) for item in items]
    more = f" and {len(listed) - shown} more" if len(listed) > shown else ""
    return ", ".join(listed[:shown]) + more


def empty_split_sentence(path: str | Path) -> str:
    """What every command says of a split CSV that holds a header and no clip."""
    return f"{path}: lists no clips (only a header); add the split's clips or remove the file."


# One rule for a clip id. A file name is the id in ASCII digits (00010.pkl); a Filename cell or a one-pickle key may
# also carry what spreadsheets and pandas add: whitespace around it (a non-breaking space too) and a '.0' (10.0, 10.).
# float() and pd.to_numeric read far more ('1e1', '+3', '1_0', full-width or Arabic-Indic digits), which no challenge
# file holds and which would name another clip than the file on disk; a sign is refused too, '-0' included, as no id
# is negative. At most 18 digits besides leading zeros: every such id fits the int64 that ids are stored in.
CLIP_ID_LIMIT = 10**18
_ID_DIGITS = "0*([0-9]{1,18})"
_CLIP_STEM = re.compile(_ID_DIGITS)
_WRITTEN_CLIP_ID = re.compile(rf"\A\s*{_ID_DIGITS}(?:\.0*)?\s*\Z")  # \s: any Unicode whitespace, as str.strip()
CLIP_ID_FORMS = "ASCII digits (10, 00010, or 10.0 as spreadsheets save it)"


def is_clip_stem(stem: str) -> bool:
    """Whether a file name without its suffix is a clip id: ASCII digits only ('1²' passes str.isdigit)."""
    return _CLIP_STEM.fullmatch(stem) is not None


def read_clip_id(text: str) -> int | None:
    """The clip id ``text`` writes (10 for ``"10"``, ``"00010"``, ``"10.0"``, ``"10."`` or ``" 10 "``), None when it is
    none."""
    match = _WRITTEN_CLIP_ID.match(text)
    return int(match[1]) if match else None


def whole_clip_id(number: int | float) -> int | None:
    """The clip id a number is (a pickled key: ``10``, ``10.0``, ``np.float16(1000.0)``): whole, finite and within
    the 18 digits of a written id; None otherwise. Judged by value, as ``str()`` writes large floats as ``1e+03``."""
    if isinstance(number, float) and not number.is_integer():  # NaN and infinities are not whole either
        return None
    return int(number) if 0 <= number < CLIP_ID_LIMIT else None


def _parse_ids(column: pd.Series, *, source: str) -> list[int]:
    """The clip ids of a ``Filename`` column (one vectorised :func:`read_clip_id`); a bad cell is a
    :class:`DataError` naming its row and value."""
    digits = column.str.extract(_WRITTEN_CLIP_ID, expand=False)
    bad = digits.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{source}: column {ID_COLUMN!r} row {column.index[row]} holds {column.iloc[row]!r}, which is"
                        f" not a clip id; write each id in {CLIP_ID_FORMS}.")
    return digits.astype(np.int64).tolist()


def _check_unique(ids: list[int], lines: pd.Index, path: Path) -> None:
    """A clip listed twice is a :class:`DataError` naming the rows of the first such id (which row's labels count is
    the user's to say), and how many other ids are listed twice too."""
    second = pd.Index(ids).duplicated()
    if not second.any():
        return
    first = ids[int(np.argmax(second))]
    rows = [line for line, clip_id in zip(lines, ids, strict=True) if clip_id == first]
    others = len({clip_id for clip_id, again in zip(ids, second, strict=True) if again}) - 1
    more = f" ({others} more id(s) are listed twice too)" if others else ""
    raise DataError(f"{path}: column {ID_COLUMN!r} lists clip id {first} in rows {shortlist(rows)}{more}; keep one"
                    " row per clip.")


# What a spreadsheet may separate the columns of an export with instead of commas, as a message names it.
_OTHER_SEPARATORS: dict[str, str] = {";": "';'", "\t": "tabs"}


def _read_cells(path: Path) -> pd.DataFrame:
    """Every cell of a split CSV as stripped-header text, indexed by the row's line in the file (what messages
    name), without the rows whose cells are all empty (blank lines, and the rows spreadsheets leave at its end)."""
    try:
        # utf-8-sig: spreadsheet exports start with a byte-order mark that would hide the Filename header.
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skip_blank_lines=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as a CSV ({exc}).") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    separator = next((name for mark, name in _OTHER_SEPARATORS.items() if mark in raw.columns[0]), None)
    if len(raw.columns) == 1 and separator:
        raise DataError(f"{path}: its columns are separated by {separator}; save it comma-separated, as the challenge"
                        " ships.")
    raw.index = raw.index + 2  # the header is line 1
    return raw[(raw.apply(lambda column: column.str.strip()) != "").any(axis=1)]


def read_split(path: str | Path, *, require_labels: bool = True) -> pd.DataFrame:
    """Read a split CSV into a frame indexed by integer clip id.

    Returns the six emotion columns as float (NaN where a split ships no labels). With
    ``require_labels`` every emotion column must be present, numeric, finite and in [0, 1].
    """
    path = Path(path)
    raw = _read_cells(path)
    if ID_COLUMN not in raw.columns:
        raise DataError(f"{path}: no {ID_COLUMN!r} column (found {list(raw.columns)}).")
    known = {ID_COLUMN, *EMOTIONS, *META_COLUMNS}
    unknown = [c for c in raw.columns if c not in known and not c.startswith("Unnamed")]
    if unknown:
        raise DataError(f"{path}: unknown column(s) {unknown}; expected {ID_COLUMN}, {list(EMOTIONS)} and"
                        f" optionally {list(META_COLUMNS)}.")
    ids = _parse_ids(raw[ID_COLUMN], source=str(path))
    _check_unique(ids, raw.index, path)
    missing = [e for e in EMOTIONS if e not in raw.columns]
    if require_labels and missing:
        raise DataError(f"{path}: missing label column(s) {missing}.")
    labels = pd.DataFrame(index=pd.Index(ids, name=ID_COLUMN), columns=list(EMOTIONS), dtype=float)
    for emotion in EMOTIONS:
        if emotion not in raw.columns:
            continue
        values = pd.to_numeric(raw[emotion].str.strip(), errors="coerce")
        bad = values.isna() & (raw[emotion].str.strip() != "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path}: column {emotion!r} row {raw.index[row]} holds {raw[emotion].iloc[row]!r}, not a"
                            " number.")
        labels[emotion] = values.to_numpy(dtype=float)
    if require_labels:
        check_label_values(labels, source=str(path))
    return labels


def read_meta(path: str | Path) -> pd.DataFrame:
    """The optional :data:`META_COLUMNS` of a split CSV, indexed by integer Filename: groups as text,
    ``raters`` as a positive integer (a bad count is a :class:`DataError` naming row and value)."""
    raw = _read_cells(Path(path))
    meta = pd.DataFrame(index=pd.Index(_parse_ids(raw[ID_COLUMN], source=str(path)), name=ID_COLUMN))
    for column in (c for c in META_COLUMNS if c in raw.columns):
        values = raw[column].str.strip()
        meta[column] = values.to_numpy()
    if RATERS_COLUMN in meta.columns:
        meta[RATERS_COLUMN] = _rater_counts(meta[RATERS_COLUMN], raw.index, path)
    return meta


def _rater_counts(cells: pd.Series, lines: pd.Index, path: str | Path) -> np.ndarray:
    """The ``raters`` column as integers; a cell that is no count >= 1 is a :class:`DataError` naming its row and
    value, and the first count more than :data:`RATERS_MAX_RATIO` times the file's median a :class:`RatersWarning`."""
    counts = pd.to_numeric(cells, errors="coerce")
    bad = ~(counts >= 1) | (counts % 1 != 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        shown = "an empty cell" if cells.iloc[row] == "" else repr(cells.iloc[row])
        raise DataError(f"{path}: column {RATERS_COLUMN!r} row {lines[row]} holds {shown}; give the number of raters,"
                        " an integer >= 1.")
    median = float(counts.median())
    excessive = np.flatnonzero((counts > RATERS_MAX_RATIO * median).to_numpy())
    if excessive.size:
        row, count = int(excessive[0]), int(counts.iloc[excessive[0]])
        warnings.warn(f"{path}: column {RATERS_COLUMN!r} row {lines[row]} holds {count}, more than {RATERS_MAX_RATIO}"
                      f" times the file's median count ({median:g}), so with loss.sample_weights: sqrt_raters the clip"
                      f" would weigh as {(count / median) ** 0.5:.0f} typical clips; correct it if it is a typo.",
                      RatersWarning, stacklevel=3)
    return counts.astype(np.int64).to_numpy()


def check_label_values(labels: pd.DataFrame, *, source: str) -> None:
    """Raise a :class:`DataError` naming the first missing, non-finite or out-of-range label."""
    values = labels[list(EMOTIONS)].to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values < 0.0) | (values > 1.0)
    if bad.any():
        row, col = (int(x) for x in np.argwhere(bad)[0])
        value = values[row, col]
        shown = "empty" if np.isnan(value) else repr(float(value))  # a CSV cell that is NaN was left empty
        raise DataError(f"{source}: column {EMOTIONS[col]!r} for Filename {labels.index[row]} is {shown}; labels must"
                        " be finite and in [0, 1].")


def write_split(labels: pd.DataFrame, path: str | Path) -> None:
    """Write a split CSV atomically: integer ``Filename`` then whichever emotion columns are present."""
    frame = labels.copy()
    frame.index = frame.index.astype(int)
    frame.index.name = ID_COLUMN
    with atomic_path(path) as tmp:
        frame.sort_index().to_csv(tmp, float_format="%.6f")
