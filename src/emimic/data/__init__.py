"""Data layer: discover a Vidmimic-style root, pack it into a FeatureStore, feed the model."""

from emimic.data.dataset import (
    ClipDataset,
    ModalityStats,
    VidmimicDataset,
    collate_clips,
    feature_statistics,
    open_dataset,
)
from emimic.data.layout import DatasetLayout, discover
from emimic.data.store import FeatureStore, PackResult, pack

__all__ = [
    "ClipDataset",
    "DatasetLayout",
    "FeatureStore",
    "ModalityStats",
    "PackResult",
    "VidmimicDataset",
    "collate_clips",
    "discover",
    "feature_statistics",
    "open_dataset",
    "pack",
]
