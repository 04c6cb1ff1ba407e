"""benchmarks/bench_small.py: its corpora are what it says (one acoustic modality, 75/20 % splits) and a row runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import import_benchmark
from emimic.data import open_dataset


@pytest.fixture(scope="module")
def bench_small():
    return import_benchmark("bench_small")


def test_a_variant_is_a_preset_with_dotted_overrides(bench_small) -> None:
    variant = bench_small.Variant.parse("bs32=paper+optim.batch_size=32+train.ema.warmup=none")
    assert (variant.label, variant.config) == ("bs32", "paper")
    assert variant.overrides == {"optim.batch_size": 32, "train.ema.warmup": "none"}
    assert bench_small.Variant.parse("mine=").config is None  # the default configuration


def test_the_acoustic_only_corpus_has_one_eGeMAPS_wide_modality_and_a_row_runs(bench_small, tmp_path: Path) -> None:
    variant = bench_small.Variant("default", None, {"train.max_epochs": 2})
    table = bench_small.bench("acoustic_only", [60], [0], [variant], tmp_path, corpora=[0, 1])
    dataset = open_dataset(tmp_path / "acoustic_only-60-corpus0")
    assert dataset.modalities == ["wav2vec2"] and dataset.store(progress=False).dim("wav2vec2") == 88
    assert (len(dataset.split("train")), len(dataset.split("valid"))) == (45, 12)
    assert set(table[60]) == {"ridge", "oracle", "default"}
    assert [len(seeds) for seeds in table[60]["default"]] == [1, 1]  # one seed on each of two corpora
    other = open_dataset(tmp_path / "acoustic_only-60-corpus1")
    assert not other.split("train").equals(dataset.split("train"))  # each corpus seed draws its own corpus


def test_a_row_reports_mean_seed_spread_and_the_paired_difference_to_ridge(bench_small) -> None:
    row = {"ridge": [[0.30], [0.20]], "default": [[0.32, 0.36], [0.20, 0.22]]}
    assert bench_small.versus_ridge(row, "default") == pytest.approx(((0.34 - 0.30) + (0.21 - 0.20)) / 2)
    expected_std = (np.std([0.32, 0.36], ddof=1) + np.std([0.20, 0.22], ddof=1)) / 2
    assert bench_small.spread(row["default"]) == f"{(0.34 + 0.21) / 2:.3f} ± {expected_std:.3f}"
