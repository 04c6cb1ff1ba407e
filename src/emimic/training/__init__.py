"""Training, evaluation and prediction of the EMI model (library API behind the CLI).

Imported lazily so that ``emimic.config`` (which reads the loss-term registry from
:mod:`emimic.training.losses`) does not pull in Lightning.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "train": "emimic.training.run",
    "TrainResult": "emimic.training.run",
    "evaluate": "emimic.training.inference",
    "predict": "emimic.training.inference",
    "load_run": "emimic.training.inference",
    "Evaluation": "emimic.training.inference",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'emimic.training' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
