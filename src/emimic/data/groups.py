"""The group column of the split CSVs: clips that must stay on one side of any split made of them.

A split CSV may name a group per clip (a speaker, the seed video imitated): the first of
:data:`~emimic.labels.GROUP_COLUMNS` present counts. Clips of one group share a speaker's face and voice
or a seed's content, so a model validated on a group it trained on is scored optimistically: cross-validation
folds (:mod:`emimic.training.crossval`) and a validation share held out of train (:mod:`emimic.data.holdout`)
both keep each group whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from emimic.errors import DataError
from emimic.labels import GROUP_COLUMNS, read_meta

# The splits whose clips are grouped: the ones folded or held out of. test_split.csv's columns never count (a column
# only it had would group no clip that is folded or held out, and made cv and --valid-fraction disagree).
GROUPED_SPLITS = ("train", "valid")


def _grouped_meta(split_files: Mapping[str, Path]) -> pd.DataFrame:
    frames = [read_meta(split_files[split]) for split in GROUPED_SPLITS if split in split_files]
    return pd.concat(frames) if frames else pd.DataFrame()


def _column(meta: pd.DataFrame) -> str | None:
    return next((c for c in GROUP_COLUMNS if c in meta.columns), None)


def group_column(split_files: Mapping[str, Path]) -> str | None:
    """The column that groups the clips: the first of :data:`~emimic.labels.GROUP_COLUMNS` that train_split.csv or
    valid_split.csv (of ``split_files``, a layout's) has, or ``None``."""
    return _column(_grouped_meta(split_files))


def clip_groups(split_files: Mapping[str, Path], ids: pd.Index, *, clips: str, files: str) -> pd.Series | None:
    """The group of each clip of ``ids`` (named after its :func:`group_column`), or ``None`` when there is no group
    column. ``ids`` are clips of train and valid, in one of them only.

    A clip without a group is refused: it could land beside its own group's clips. ``clips`` names the clips in
    that sentence (``train+valid``) and ``files`` the split CSVs to fix (``both split CSVs``).
    """
    meta = _grouped_meta(split_files)
    column = _column(meta)
    if column is None:
        return None
    groups = meta[column].reindex(ids)
    missing = groups.index[groups.isna() | (groups == "")]
    if missing.size:
        raise DataError(f"group column {column!r} is empty or absent for {missing.size} clip(s) of {clips} (e.g."
                        f" Filename {missing[0]}); give every clip of {files} a group, or drop the column.")
    return groups
