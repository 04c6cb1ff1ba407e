"""benchmarks/bench_recipe.py --ceiling: the noise-free twin of a corpus has the expected labels and its features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import import_benchmark
from emimic.data import open_dataset
from emimic.labels import EMOTIONS


@pytest.fixture(scope="module")
def bench_recipe():
    return import_benchmark("bench_recipe")


def test_the_noise_free_twin_has_the_expected_labels_and_the_corpus_features(bench_recipe, simulated_root: Path,
                                                                             tmp_path: Path) -> None:
    before = {split: (simulated_root / f"{split}_split.csv").read_bytes() for split in ("train", "valid")}
    twin = bench_recipe.noise_free_twin(simulated_root, tmp_path / "twin")
    truth = pd.read_csv(simulated_root / ".truth" / "clips.csv", index_col="Filename")
    original, noise_free = open_dataset(simulated_root), open_dataset(twin)
    assert noise_free.modalities == original.modalities
    for split in ("train", "valid"):
        labels = noise_free.split(split)
        assert labels.index.equals(original.split(split).index)
        expected = truth.loc[labels.index, [f"expected {e}" for e in EMOTIONS]].to_numpy()
        np.testing.assert_allclose(labels[list(EMOTIONS)].to_numpy(), expected, atol=1e-6)
        assert not np.allclose(labels[list(EMOTIONS)].to_numpy(), original.split(split)[list(EMOTIONS)].to_numpy())
    assert {split: (simulated_root / f"{split}_split.csv").read_bytes() for split in before} == before
    assert not (twin / "oracle.json").exists()  # the corpus's oracle scores labels the twin does not have
    (twin / "vit").unlink()
    (twin / "vit").symlink_to(tmp_path / "gone")  # dangling, as after the corpus was simulated anew elsewhere
    bench_recipe.noise_free_twin(simulated_root, tmp_path / "twin")
    assert open_dataset(twin).modalities == original.modalities
