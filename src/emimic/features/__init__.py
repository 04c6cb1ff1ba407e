"""Feature extraction from raw videos: registered extractors and the resumable, parallel driver.

>>> from emimic.features import available_extractors
>>> "egemaps" in available_extractors()
True

Heavy libraries (PyAV, opensmile, transformers, mediapipe, faster-whisper) are imported inside
the extractors, on first use, so importing this package stays cheap.
"""

from emimic.features.base import (
    ClipInput,
    Extractor,
    NoSignal,
    Output,
    available_extractors,
    build_extractor,
    register_extractor,
)
from emimic.features.media import Media, decode
from emimic.features.pipeline import extract
from emimic.registry import EXTRACTORS

__all__ = [
    "EXTRACTORS",
    "ClipInput",
    "Extractor",
    "Media",
    "NoSignal",
    "Output",
    "available_extractors",
    "build_extractor",
    "decode",
    "extract",
    "register_extractor",
]
