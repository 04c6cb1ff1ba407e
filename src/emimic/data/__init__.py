"""Data layer: discover a Vidmimic-style root, pack it into a FeatureStore, feed the model.

Names load lazily so that tools which only read the store (``emimic pack``, ``validate``) do
not pay for importing torch.
"""

from __future__ import annotations

from emimic.lazy import lazy_exports

_EXPORTS = {
    "ClipDataset": "emimic.data.dataset",
    "ModalityStats": "emimic.data.dataset",
    "VidmimicDataset": "emimic.data.dataset",
    "collate_clips": "emimic.data.dataset",
    "feature_statistics": "emimic.data.dataset",
    "open_dataset": "emimic.data.dataset",
    "with_valid_split": "emimic.data.dataset",
    "DatasetLayout": "emimic.data.layout",
    "discover": "emimic.data.layout",
    "FeatureStore": "emimic.data.store",
    "PackResult": "emimic.data.store",
    "pack": "emimic.data.store",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
