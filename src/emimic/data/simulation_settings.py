"""The settings of the simulated corpus (:class:`SimulationSettings`), apart from the generator.

The fields are made from :data:`~emimic.data.simulation_knobs.KNOBS`, the one list of knobs that
``emimic simulate`` also reads for its flags (without importing this module, pydantic or numpy, so
its ``--help`` prints at once). The generator itself is :mod:`emimic.data.simulate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from emimic.config import explain, read_yaml_mapping
from emimic.data.simulation_knobs import KNOBS


class _Consistent(BaseModel):
    """What the fields of :class:`SimulationSettings` must satisfy together, and how they are read from YAML."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.train_fraction + self.valid_fraction >= 1:
            raise ValueError(
                f"train_fraction + valid_fraction is {self.train_fraction + self.valid_fraction:g};"
                " it must stay below 1 to leave clips for the test split."
            )
        if self.rating_levels == 1:
            raise ValueError("rating_levels 1 leaves a single answer; use 0 (continuous) or at least 2.")
        if self.min_raters > self.n_raters:
            raise ValueError(f"min_raters {self.min_raters} exceeds n_raters {self.n_raters}.")
        if self.min_duration > self.max_duration:
            raise ValueError(f"min_duration {self.min_duration:g} exceeds max_duration {self.max_duration:g}.")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> Self:
        """Read settings from a YAML mapping, with ``overrides`` (e.g. CLI flags) taking precedence."""
        path = Path(path)
        loaded = read_yaml_mapping(path, what="a simulation settings YAML file", holds="settings")
        try:
            return cls.model_validate({**loaded, **overrides})
        except ValidationError as exc:
            raise explain(exc, cls, source=str(path)) from None


SimulationSettings = create_model(
    "SimulationSettings",
    __base__=_Consistent,
    __module__=__name__,
    __doc__="""Every knob of the simulated corpus; the defaults give a small Vidmimic-like corpus.

    The defaults keep the whole demo (simulate, pack, train) within about a minute on two cores
    and the corpus near 250 MB, which is why the clips are short: wav2vec2-style audio runs at
    50 frames/s with 768 float32 features, i.e. 150 kB per second of audio.
    """,
    **{k.name: (k.kind, Field(k.default, description=k.description, **k.bounds)) for k in KNOBS},
)
