"""The group column of the split CSVs: clips that must stay on one side of any split made of them.

A split CSV may name a group per clip (a speaker, the seed video imitated): the first of
:data:`~emimic.labels.GROUP_COLUMNS` present counts. Clips of one group share a speaker's face and voice
or a seed's content, so a model validated on a group it trained on is scored optimistically: cross-validation
folds (:mod:`emimic.training.crossval`) and a validation share held out of train (:mod:`emimic.data.holdout`)
both keep each group whole.
"""

from __future__ import annotations

import pandas as pd

from emimic.errors import DataError
from emimic.labels import GROUP_COLUMNS


def group_column(meta: pd.DataFrame) -> str | None:
    """The column of ``meta`` (split CSVs' optional columns, :func:`~emimic.labels.read_meta`) that groups clips."""
    return next((c for c in GROUP_COLUMNS if c in meta.columns), None)


def clip_groups(meta: pd.DataFrame, ids: pd.Index, *, clips: str, files: str) -> pd.Series | None:
    """The group of each clip of ``ids`` (named after its column), or ``None`` when ``meta`` has no group column.

    A clip without a group is refused: it could land beside its own group's clips. ``clips`` names the clips in
    that sentence (``train+valid``) and ``files`` the split CSVs to fix (``both split CSVs``).
    """
    column = group_column(meta)
    if column is None:
        return None
    groups = meta[column].reindex(ids)
    missing = groups.index[groups.isna() | (groups == "")]
    if missing.size:
        raise DataError(f"group column {column!r} is empty or absent for {missing.size} clip(s) of {clips} (e.g."
                        f" Filename {missing[0]}); give every clip of {files} a group, or drop the column.")
    return groups
