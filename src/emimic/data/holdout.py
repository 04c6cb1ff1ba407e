"""A validation split held out of ``train_split.csv`` when a corpus ships none (``--valid-fraction F``).

Model selection needs a validation split. A corpus without ``valid_split.csv`` is refused by both
``emimic validate`` and ``emimic train`` with the same sentence, unless the user asks for a
held-out share of the training clips. The split CSVs of the Hume-Vidmimic2 layout carry no
speaker or group column, so clips are held out individually. The draw depends only on the
training ids and the fraction, not on ``--seed``: runs of several seeds are selected and scored on
the same clips, and ``validate`` can report exactly what ``train`` will hold out.

Example::

    train, valid = hold_out(splits["train"], 0.2)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from emimic.data.layout import SPLIT_FILES
from emimic.errors import DataError
from emimic.labels import EMOTIONS, constant_emotions

VALID_FILE = SPLIT_FILES["valid"][0]
TRAIN_FILE = SPLIT_FILES["train"][0]
# A fixed seed: the held-out clips must not change with the training seed.
_HOLDOUT_SEED = 20_240_607
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


def hold_out(train: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the training labels into (kept, held out): ``round(fraction * n)`` clips, at least one each."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"--valid-fraction {fraction} is not between 0 and 1; give e.g. 0.2.")
    if len(train) < 2:
        raise DataError(f"{TRAIN_FILE} has {len(train)} clip(s); holding out a validation share needs at least 2.")
    n_valid = min(len(train) - 1, max(1, round(fraction * len(train))))
    order = np.random.default_rng(_HOLDOUT_SEED).permutation(np.sort(train.index.to_numpy()))
    held = train.index.isin(order[:n_valid])
    return train[~held], train[held]


def validation_clips(fraction: float | None) -> str:
    """The clips a model validates on, in words for a title or a report: the valid split, or the share of train
    held out (``train.valid_fraction``)."""
    if fraction is None:
        return "the validation split"
    return f"{fraction * 100:g} % of train held out (train.valid_fraction {fraction})"


def refuse_unused_fraction(splits: Mapping[str, pd.DataFrame], fraction: float | None, *, root: Path) -> None:
    """Refuse a ``fraction`` to hold out beside a valid split, which is what a model validates on."""
    if "valid" in splits and fraction is not None:
        raise DataError(unused_fraction_sentence(root))


def resolve_valid_split(
    splits: Mapping[str, pd.DataFrame], fraction: float | None, *, root: Path
) -> dict[str, pd.DataFrame]:
    """The splits training uses: as given when a valid split exists, else with ``fraction`` of train held out.

    Raises the sentence ``validate`` reports when there is no valid split and no ``fraction``, or a
    ``fraction`` but also a valid split.
    """
    refuse_unused_fraction(splits, fraction, root=root)
    if "valid" in splits:
        return dict(splits)
    if fraction is None:
        raise DataError(missing_valid_sentence(root))
    if "train" not in splits:
        raise DataError(f"{root}: no {TRAIN_FILE}: nothing to train on.")
    kept, held = hold_out(splits["train"], fraction)
    return {**splits, "train": kept, "valid": held}
