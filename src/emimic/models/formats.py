"""Model formats: the changelog of what a trained run's predictions depend on besides its config and weights.

Every run records in ``run.json`` the model format of the emimic that trained it (:data:`MODEL_FORMAT`). A change
to emimic that makes the same config and weights predict differently (a fusion that reads other inputs, an
encoder that pools otherwise) appends a :class:`FormatChange` to :data:`CHANGES` with the next number, naming
the runs it affects. Loading or resuming a run is then refused when a change newer than its format affects it
(its weights were trained for the old computation), or when its format is newer than this emimic knows; the
other runs keep loading (:func:`emimic.training.provenance.check_model_format`). A run made before emimic
recorded a format is of :data:`FIRST_FORMAT`. docs/training.md ("Model formats") shows :func:`format_table`.

To record a change: append ``FormatChange(MODEL_FORMAT + 1, "what changed", {"model.key": (values,)})``.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emimic.config import ExperimentConfig

# The format of every run whose run.json records none: all made before the first change below.
FIRST_FORMAT = 1


@dataclass(frozen=True)
class FormatChange:
    """A change of emimic that alters the predictions of the runs it ``affects``, from model format ``format`` on."""

    format: int
    what: str  # a clause that follows "since then": what changed and which predictions it alters
    # {dotted config key: the values it affects}: a run is affected when every key holds one of its values
    affects: Mapping[str, tuple[object, ...]]

    def alters(self, config: ExperimentConfig) -> bool:
        """Whether this change alters the predictions of a run trained with ``config``."""
        return all(operator.attrgetter(key)(config) in values for key, values in self.affects.items())

    def describe_affected(self) -> str:
        """The runs it affects, in words."""
        settings = ", ".join(f"{key}: {' or '.join(map(str, values))}" for key, values in self.affects.items())
        return settings or "every run"


CHANGES: tuple[FormatChange, ...] = (
    FormatChange(
        2,
        "the attention fusion reads learned missing-modality tokens instead of masking absent modalities out, which"
        " changes its predictions on clips that lack a modality",
        {"model.fusion": ("attention",)},
    ),
)

# The format of the runs this emimic trains, and the newest it can load.
MODEL_FORMAT = CHANGES[-1].format


def changes_since(made_with: int, config: ExperimentConfig) -> list[FormatChange]:
    """The changes after format ``made_with`` that alter the predictions of a run trained with ``config``."""
    return [change for change in CHANGES if change.format > made_with and change.alters(config)]


def format_table() -> str:
    """The changelog as a Markdown table (docs/training.md shows it)."""
    rows = [f"| {FIRST_FORMAT} | every run whose `run.json` records no `model_format` | - |"]
    rows += [f"| {change.format} | {change.what} | {change.describe_affected()} |" for change in CHANGES]
    return "\n".join(["| format | what changed | older runs refused |", "|---|---|---|", *rows])
