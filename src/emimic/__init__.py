"""emimic: Emotional Mimicry Intensity estimation.

The library API, importable from the top level (loaded lazily, so ``import emimic`` stays fast)::

    import emimic
    emimic.simulate("data/sim")                       # a simulated corpus in the Vidmimic layout
    ds = emimic.open_dataset("data/sim")              # splits as pandas, modalities, FeatureStore
    emimic.extract("data/mine", ["egemaps", "whisper", "text_emb"])
    result = emimic.train("data/sim", "runs/paper", seed=0)
    emimic.evaluate("runs/paper", "data/sim", split="valid")
    emimic.predict("runs/paper", "data/sim", split="test", out="submission.csv")
"""

from __future__ import annotations

from typing import Any

from emimic.lazy import lazy_exports

_EXPORTS = {
    "open_dataset": "emimic.data",
    "pack": "emimic.data",
    "validate": "emimic.data.validate",
    "simulate": "emimic.data.simulate",
    "SimulationSettings": "emimic.data.simulation_settings",
    "extract": "emimic.features",
    "train": "emimic.training",
    "evaluate": "emimic.training",
    "predict": "emimic.training",
    "EMOTIONS": "emimic.labels",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


_exported = lazy_exports(__name__, _EXPORTS)


def installed_version() -> str:
    """emimic's installed version ("0.0.0" in a source tree that was never installed)."""
    # importlib.metadata costs a fifth of a second at start-up: read only when asked.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emimic")
    except PackageNotFoundError:
        return "0.0.0"


def __getattr__(name: str) -> Any:
    return installed_version() if name == "__version__" else _exported(name)
