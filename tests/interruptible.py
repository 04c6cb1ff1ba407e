"""The emimic CLI stopped at a named point, so a test can interrupt or kill it there and nowhere else.

``python tests/interruptible.py ARGS...`` runs ``emimic ARGS...`` with a ``slow`` extractor registered.
Work passes named points: ``<modality>/<file>`` before ``pack`` decodes that file, and
``slow_images/<id>/<n>.jpg`` before the ``slow`` extractor hands over crop ``n`` of clip ``id`` (crops
below ``n`` are then written, in the clip's temporary folder). At the point named by ``$HOLD_AT`` the
command creates the file ``$HOLD_FILE`` and waits there: a test waits for that file, then signals, or creates the
file ``$HOLD_RELEASE`` to let the command go on. No sleep has to outlast a race, however loaded the machine. The
``slow`` extractor needs no media (any ``raw/<id>.mp4`` will do) and writes, per clip, a ``slow/<id>.npy`` array and
a ``slow_images/<id>/`` folder of ``IMAGES`` crops.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from emimic.data import store
from emimic.features.base import EXTRACTORS, ClipInput, Extractor, Output
from emimic.labels import clip_stem

IMAGES = 3
# How long a held command waits for the test's signal before it gives up (a test that failed to signal).
HOLD_LIMIT_SECONDS = 600.0


def reach(point: str) -> None:
    """Pass ``point``; when it is ``$HOLD_AT``, announce it in ``$HOLD_FILE`` and wait there for a signal."""
    if point != os.environ.get("HOLD_AT"):
        return
    Path(os.environ["HOLD_FILE"]).write_text(point, encoding="utf-8")
    released, deadline = Path(os.environ["HOLD_RELEASE"]), time.monotonic() + HOLD_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if released.exists():
            return
        time.sleep(0.02)
    sys.exit(f"held at {point} for {HOLD_LIMIT_SECONDS:.0f} s and no signal came")


class HeldImages(dict):
    """The crops of one clip, handed over one by one past the points ``slow_images/<id>/<n>.jpg``."""

    def __init__(self, stem: str, images: dict[int, np.ndarray]):
        super().__init__(images)
        self.stem = stem

    def items(self) -> Iterator[tuple[int, np.ndarray]]:  # type: ignore[override]
        for number, image in super().items():
            reach(f"slow_images/{self.stem}/{number}.jpg")
            yield number, image


class Slow(Extractor):
    """Clip id as features, plus grey crops; no media needed."""

    name = "slow"

    def outputs(self) -> tuple[Output, ...]:
        return (Output("slow", "frame", "clip id, twice"), Output("slow_images", "images", "grey crops"))

    def _process(self, clip: ClipInput) -> dict[str, object]:
        crops = HeldImages(clip_stem(clip.clip_id), {n: np.full((8, 8, 3), 10 * n, np.uint8) for n in range(IMAGES)})
        return {"slow": pd.DataFrame(np.full((2, 3), clip.clip_id, np.float32)), "slow_images": crops}


DECODE = store.decode_frames


def held_decode(data: bytes, suffix: str, *, source: str) -> np.ndarray:
    path = Path(source)
    reach(f"{path.parent.name}/{path.name}")
    return DECODE(data, suffix, source=source)

# Spawned extraction workers import this script as __mp_main__: they need the extractor too.
if __name__ in ("__main__", "__mp_main__"):
    EXTRACTORS[Slow.name] = Slow
    store.decode_frames = held_decode  # type: ignore[assignment]

if __name__ == "__main__":
    from emimic.cli.registry import main

    # A shell without job control starts background commands with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: a test suite launched that way must still see Ctrl-C reach the command under test.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main(sys.argv[1:]))
