"""Training, evaluation and prediction of the EMI model (library API behind the CLI).

Imported lazily so that ``emimic.config`` (which reads the loss-term registry from
:mod:`emimic.training.losses`) does not pull in Lightning.
"""

from __future__ import annotations

from emimic.lazy import lazy_exports

_EXPORTS = {
    "train": "emimic.training.run",
    "TrainResult": "emimic.training.run",
    "evaluate": "emimic.training.inference",
    "predict": "emimic.training.inference",
    "load_run": "emimic.training.inference",
    "Evaluation": "emimic.training.inference",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
