"""Feature extraction from raw videos: registered extractors and the resumable, parallel driver.

>>> from emimic.features import available_extractors
>>> "egemaps" in available_extractors()
True

Heavy libraries (PyAV, opensmile, transformers, mediapipe, faster-whisper) are imported inside
the extractors, on first use, so importing this package stays cheap.
"""

# Import order is registry order, which is the order extractors run on a clip: `whisper` (which
# writes the transcript) comes before `text_emb` (which embeds it).
from emimic.features import audio, text, vad, vision  # noqa: F401 - registers the extractors
from emimic.features.base import (
    EXTRACTORS,
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
