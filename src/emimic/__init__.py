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

from importlib.metadata import PackageNotFoundError, version

from emimic.lazy import lazy_exports

try:
    __version__ = version("emimic")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

_EXPORTS = {
    "open_dataset": "emimic.data",
    "pack": "emimic.data",
    "validate": "emimic.data.validate",
    "simulate": "emimic.data.simulate",
    "SimulationSettings": "emimic.data.simulate",
    "extract": "emimic.features",
    "train": "emimic.training",
    "evaluate": "emimic.training",
    "predict": "emimic.training",
    "EMOTIONS": "emimic.labels",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__ = lazy_exports(__name__, _EXPORTS)
