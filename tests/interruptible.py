"""The emimic CLI with slow work, so a test can interrupt or kill it at a known point.

``python tests/interruptible.py ARGS...`` runs ``emimic ARGS...`` with a ``slow`` extractor
registered and every file that ``pack`` reads delayed by ``$SLOW_SECONDS`` (default 0). The
``slow`` extractor needs no media (any ``raw/<id>.mp4`` will do) and writes, per clip, a
``slow/<id>.npy`` array and a ``slow_images/<id>/`` folder of ``IMAGES`` crops, sleeping between
crops: a kill then lands while a crop folder is half written.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd

from emimic.data import store
from emimic.features.base import EXTRACTORS, ClipInput, Extractor, Output

IMAGES = 3


def delay() -> float:
    return float(os.environ.get("SLOW_SECONDS", "0"))


class SlowImages(dict):
    """Crops that take ``delay()`` seconds each to hand over, as a slow face detector would."""

    def items(self) -> Iterator[tuple[int, np.ndarray]]:  # type: ignore[override]
        for number, image in super().items():
            yield number, image
            time.sleep(delay())


class Slow(Extractor):
    """Clip id as features, plus grey crops; no media needed."""

    name = "slow"

    def outputs(self) -> tuple[Output, ...]:
        return (Output("slow", "frame", "clip id, twice"), Output("slow_images", "images", "grey crops"))

    def _process(self, clip: ClipInput) -> dict[str, object]:
        crops = SlowImages({n: np.full((8, 8, 3), 10 * n, np.uint8) for n in range(IMAGES)})
        return {"slow": pd.DataFrame(np.full((2, 3), clip.clip_id, np.float32)), "slow_images": crops}


DECODE = store.decode_array


def slow_decode(data: bytes, suffix: str, *, source: str) -> np.ndarray:
    time.sleep(delay())
    return DECODE(data, suffix, source=source)

# Spawned extraction workers import this script as __mp_main__: they need the extractor too.
if __name__ in ("__main__", "__mp_main__"):
    EXTRACTORS[Slow.name] = Slow
    store.decode_array = slow_decode  # type: ignore[assignment]

if __name__ == "__main__":
    from emimic.cli.registry import main

    sys.exit(main(sys.argv[1:]))
