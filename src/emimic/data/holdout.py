"""A validation split held out of ``train_split.csv`` when a corpus ships none (``--valid-fraction F``).

Model selection needs a validation split. A corpus without ``valid_split.csv`` is refused by both
``emimic validate`` and ``emimic train`` with the same sentence, unless the user asks for a
held-out share of the training clips. Clips are held out one by one, unless ``train_split.csv`` has a
group column (:mod:`emimic.data.groups`, as cross-validation folds by): then whole groups are, as near
the share as any set of them can, so that the best epoch is never selected on a speaker (or seed video) the
model trained on. The draw depends only on the training ids (and groups) and the fraction, not on
``--seed``: runs of several seeds are selected and scored on the same clips, and ``validate`` can report
exactly what ``train`` will hold out.

Example::

    train, valid = hold_out(splits["train"], 0.2)
    train, valid = hold_out(splits["train"], 0.2, groups=speakers)  # whole speakers
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from emimic.data.groups import clip_groups
from emimic.data.layout import SPLIT_FILES
from emimic.errors import DataError, EmimicWarning
from emimic.labels import EMOTIONS, constant_emotions

VALID_FILE = SPLIT_FILES["valid"][0]
TRAIN_FILE = SPLIT_FILES["train"][0]
# A fixed seed: the held-out clips must not change with the training seed.
_HOLDOUT_SEED = 20_240_607
# How far (as a factor) from --valid-fraction the share whole groups hold out may come before train warns.
FAR_SHARE = 2.0
# A Pearson correlation needs two clips: fewer leaves the best epoch to chance.
MIN_PCC_CLIPS = 2


def missing_valid_sentence(root: Path) -> str:
    """What ``validate``, ``train``, ``ablate`` and ``sweep`` all say about a corpus with no validation split."""
    return (
        f"{root}: no {VALID_FILE}, so there is nothing to select the best epoch on; add one, or pass"
        f" --valid-fraction F (e.g. 0.2) to train, validate, ablate or sweep to hold out that share of {TRAIN_FILE}."
    )


def unused_fraction_sentence(root: Path) -> str:
    return f"{root}: has a {VALID_FILE}, so --valid-fraction does not apply; drop it or remove the file."


def check_pcc_size(clips: pd.DataFrame, *, root: Path, split: str, remedy: str, where: str = "") -> None:
    """Refuse a split of fewer clips than a PCC needs, in the one sentence every command says (``remedy``: what the
    user can do in that command; ``where``: what the sentence begins with, a CV fold's ``fold 2: ``)."""
    if len(clips) < MIN_PCC_CLIPS:
        raise DataError(f"{where}{root}: the {split} split has {len(clips)} clip(s), but a PCC needs at least"
                        f" {MIN_PCC_CLIPS}; {remedy}.")


def check_valid_size(valid: pd.DataFrame, *, root: Path, fraction: float | None, where: str = "") -> None:
    """Refuse a validation split too small to select the best epoch on (what ``validate`` and ``train`` both say);
    ``fraction``: the ``--valid-fraction`` it was held out with, if it was; ``where``: as for :func:`check_pcc_size`."""
    remedy = f"add clips to {VALID_FILE}" if fraction is None else "use a larger --valid-fraction"
    check_pcc_size(valid, root=root, split="validation", remedy=remedy, where=where)
    check_labels_vary(valid, root=root, split="validation", purpose="select the best epoch on", where=where)


def check_labels_vary(clips: pd.DataFrame, *, root: Path, split: str, purpose: str, where: str = "") -> None:
    """Refuse a split whose six label columns are all constant (all 0, say): no PCC exists on it for ``purpose``
    (``where``: as for :func:`check_pcc_size`)."""
    if len(constant_emotions(clips)) == len(EMOTIONS):
        raise DataError(f"{where}{root}: the labels of every emotion are constant over the {len(clips)} clips of the"
                        f" {split} split, so no PCC exists to {purpose}; use a split whose labels vary.")


def hold_out(train: pd.DataFrame, fraction: float,
             groups: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the training labels into (kept, held out): ``round(fraction * n)`` clips, at least one each; with
    ``groups`` (the group of each clip of ``train``, by id, named after its column) whole groups, as near that count as
    their sizes allow (:func:`held_groups`)."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"--valid-fraction {fraction} is not between 0 and 1; give e.g. 0.2.")
    if len(train) < 2:
        raise DataError(f"{TRAIN_FILE} has {len(train)} clip(s); holding out a validation share needs at least 2.")
    n_valid = min(len(train) - 1, max(1, round(fraction * len(train))))
    if groups is not None:
        held = groups.reindex(train.index).isin(held_groups(groups, n_valid)).to_numpy()  # by id, not row
        warn_far_share(int(held.sum()), len(train), fraction, str(groups.name))
    else:
        order = np.random.default_rng(_HOLDOUT_SEED).permutation(np.sort(train.index.to_numpy()))
        held = train.index.isin(order[:n_valid])
    return train[~held], train[held]


def held_groups(groups: pd.Series, n_valid: int) -> list[str]:
    """The groups to hold out: those whose clips number as near ``n_valid`` as any set of whole groups can, of
    equally near counts the smaller (more clips to train on), and one group at least held out and one kept.

    An exact subset sum over the group sizes (a greedy pick misses ``10 + 5`` for 15 of groups 10, 28, 29, 3, 5):
    each count of clips is reached by the first set of groups, in a seeded order of the group names, that reaches
    it, so the choice depends only on the groups and ``n_valid``.
    """
    sizes = groups.value_counts()
    if len(sizes) < 2:
        raise DataError(f"{TRAIN_FILE}: all {len(groups)} clips are in one {groups.name!r} group, and --valid-fraction"
                        f" holds out whole groups; give the clips at least 2 groups, remove the {groups.name!r} column"
                        f" to hold out clips one by one, or add a {VALID_FILE}.")
    names = np.random.default_rng(_HOLDOUT_SEED).permutation(np.sort(sizes.index.to_numpy()))
    counts = sizes[names].to_numpy()
    total = int(counts.sum())
    # last[s]: the position (in names) of the last group of the first set found whose clips number s; -1 unreached
    last = np.full(total + 1, -1)
    last[0] = len(names)  # the empty set: reached, and never taken apart
    for position, count in enumerate(counts):
        reached = np.flatnonzero(last >= 0) + count
        reached = reached[reached <= total]
        last[reached[last[reached] < 0]] = position
    # a count below the total is one of a set that keeps a group; above zero, of one that holds one out
    candidates = np.flatnonzero(last[1:total] >= 0) + 1
    count = int(candidates[np.argmin(np.abs(candidates - n_valid) * 2 + (candidates > n_valid))])
    held: list[str] = []
    while count:
        held.append(names[last[count]])
        count -= counts[last[count]]
    return held


def warn_far_share(held: int, of: int, fraction: float, column: str) -> None:
    """Warn when the whole groups held out of ``of`` clips are a share far from ``fraction`` (over twice or under
    half of it): groups too large or too few for it, which the user may want to know before training on them."""
    if not fraction / FAR_SHARE <= held / of <= fraction * FAR_SHARE:
        warnings.warn(f"{TRAIN_FILE}: --valid-fraction {fraction} holds out {held} of {of} clips"
                      f" ({held / of * 100:.0f} %), the nearest share that whole {column!r} groups make; give the"
                      f" clips more and smaller groups, or add a {VALID_FILE}, to validate on a share nearer"
                      f" {fraction * 100:g} %.", EmimicWarning, stacklevel=2)


def grouped_words(column: str) -> str:
    """How ``validate``, ``train`` and a run's ``metrics.json`` say that a held-out split is made of whole groups."""
    return f"whole {column!r} groups"


def held_out_words(held: int, of: int, column: str | None) -> str:
    """What ``train`` says it validated on: ``held out 8 of 60 train clips (13 %) as whole 'speaker' groups``
    (``column``: the group column, ``None`` when clips were held out one by one)."""
    how = f"as {grouped_words(column)}" if column else "one by one"
    return f"held out {held} of {of} train clips ({held / of * 100:.0f} %) {how}"


def validation_clips(fraction: float | None, column: str | None = None) -> str:
    """The clips a model validates on, in words for a title or a report: the valid split, or the share of train
    held out (``train.valid_fraction``), as whole groups of ``column`` if it is given."""
    if fraction is None:
        return "the validation split"
    if column:
        return f"{grouped_words(column)} near {fraction * 100:g} % of train held out (train.valid_fraction {fraction})"
    return f"{fraction * 100:g} % of train held out (train.valid_fraction {fraction})"


def refuse_unused_fraction(splits: Mapping[str, pd.DataFrame], fraction: float | None, *, root: Path) -> None:
    """Refuse a ``fraction`` to hold out beside a valid split, which is what a model validates on."""
    if "valid" in splits and fraction is not None:
        raise DataError(unused_fraction_sentence(root))


def resolve_valid_split(
    splits: Mapping[str, pd.DataFrame], fraction: float | None, *, root: Path, split_files: Mapping[str, Path]
) -> tuple[dict[str, pd.DataFrame], str | None]:
    """The splits training uses: as given when a valid split exists, else with ``fraction`` of train held out; and
    the group column whose whole groups were held out (``None``: none, or clips one by one). ``split_files``: the
    split CSVs ``splits`` were read from (the group column is read from train's).

    Raises the sentence ``validate`` reports when there is no valid split and no ``fraction``, or a
    ``fraction`` but also a valid split.
    """
    refuse_unused_fraction(splits, fraction, root=root)
    if "valid" in splits:
        return dict(splits), None
    if fraction is None:
        raise DataError(missing_valid_sentence(root))
    if "train" not in splits:
        raise DataError(f"{root}: no {TRAIN_FILE}: nothing to train on.")
    groups = clip_groups(split_files, splits["train"].index, clips=TRAIN_FILE, files=TRAIN_FILE)
    kept, held = hold_out(splits["train"], fraction, groups)
    return {**splits, "train": kept, "valid": held}, None if groups is None else str(groups.name)
