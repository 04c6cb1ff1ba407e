"""Data layer: discover a Vidmimic-style root, pack it into a FeatureStore, feed the model.

Names load lazily so that tools which only read the store (``emimic pack``, ``validate``) do
not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClipDataset": "emimic.data.dataset",
    "ModalityStats": "emimic.data.dataset",
    "VidmimicDataset": "emimic.data.dataset",
    "collate_clips": "emimic.data.dataset",
    "feature_statistics": "emimic.data.dataset",
    "open_dataset": "emimic.data.dataset",
    "DatasetLayout": "emimic.data.layout",
    "discover": "emimic.data.layout",
    "FeatureStore": "emimic.data.store",
    "PackResult": "emimic.data.store",
    "pack": "emimic.data.store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'emimic.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
