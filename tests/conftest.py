"""Shared fixtures: tiny Vidmimic-style roots written from numpy, independent of the simulator."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emimic.labels import EMOTIONS, clip_stem


def write_root(
    root: Path,
    *,
    train: int = 12,
    valid: int = 6,
    test: int = 4,
    dims: dict[str, int] | None = None,
    missing: dict[str, list[int]] | None = None,
    seed: int = 0,
) -> Path:
    """A small dataset root: pickled (T, D) arrays per modality and labelled split CSVs."""
    rng = np.random.default_rng(seed)
    dims = dims or {"vit": 8, "wav2vec2": 12}
    missing = missing or {}
    ids = np.arange(1, train + valid + test + 1) * 3
    labels = pd.DataFrame(rng.uniform(0, 1, (len(ids), len(EMOTIONS))), columns=list(EMOTIONS))
    labels.insert(0, "Filename", ids)
    root.mkdir(parents=True, exist_ok=True)
    labels.iloc[:train].to_csv(root / "train_split.csv", index=False)
    labels.iloc[train : train + valid].to_csv(root / "valid_split.csv", index=False)
    labels.iloc[train + valid :][["Filename"]].to_csv(root / "test_split.csv", index=False)
    for name, dim in dims.items():
        (root / name).mkdir(exist_ok=True)
        for clip_id in ids:
            if int(clip_id) in missing.get(name, []):
                continue
            frames = rng.normal(size=(int(rng.integers(3, 20)), dim)).astype(np.float32)
            with open(root / name / f"{clip_stem(clip_id)}.pkl", "wb") as handle:
                pickle.dump(frames, handle)
    return root


@pytest.fixture
def make_root(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "root", **kwargs) -> Path:
        return write_root(tmp_path / name, **kwargs)

    return make
